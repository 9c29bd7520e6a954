"""Journal files (DESIGN.md §7): one ring's raw records in chunked files, memory-mappable.

    header   header_size bytes (a multiple of 4096, so the records are page aligned):
             magic b"TTQJRNL1" | layout version u32 | record type u32 | record size u32 |
             header size u32 | created ns i64 | the ring's created ns i64 (which ring: one
             made again starts its positions again) | first position u64 | ring name (64 bytes)
             | instrument table length u32 | pad to 128 | instrument table JSON | zeros
    records  record_size bytes each, back to back: record i is the ring's position
             first_position + i (a file holds one unbroken run of positions; a gap in what
             the recorder could read starts a new file, so gaps are between files)

Files are only ever appended to and never reopened for writing: a writer killed mid-record
leaves a partial record at the end, which readers leave out (and say so).
"""
from __future__ import annotations

import json
import logging
import os
import re
import struct
import time

import numpy as np

from ttquant.core.instruments import InstrumentTable
from ttquant.core.records import dtype_for

__all__ = ["JournalWriter", "JournalFile", "JournalFileError", "TornHeader", "journal_files", "journal_directories",
           "read_journal", "between", "FILE_SUFFIX", "LAYOUT_VERSION"]

log = logging.getLogger("ttquant.journal")

MAGIC = b"TTQJRNL1"
LAYOUT_VERSION = 1
FIXED = struct.Struct("<8sIIIIqqQ64sI")       # 116 bytes, padded to FIXED_SIZE
FIXED_SIZE = 128
PAGE = 4096
FILE_SUFFIX = ".ttqj"
_NAME = re.compile(r"(\d{8}T\d{6})-(\d{20})-(\d{20})\.ttqj\Z")


class JournalFileError(ValueError):
    """A file that is not a journal file of this layout; the message names the file."""


class TornHeader(JournalFileError):
    """A journal file cut before the end of its header (a full disk, a crash as it was made):
    it holds no record, and journal_files() leaves it out."""


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _header(record_type, record_size, first_position, ring_name, ring_created_ns, table_json, created_ns):
    table = table_json.encode()
    size = -(-(FIXED_SIZE + len(table)) // PAGE) * PAGE
    fixed = FIXED.pack(MAGIC, LAYOUT_VERSION, record_type, record_size, size, created_ns,
                       ring_created_ns, first_position, ring_name.encode()[:64], len(table))
    return (fixed.ljust(FIXED_SIZE, b"\0") + table).ljust(size, b"\0")


class JournalWriter:
    """Appends one unbroken run of a ring's positions to a new file in directory."""

    def __init__(self, directory: str, ring_name: str, record_type: int, record_size: int,
                 first_position: int, table_json: str = "{}", ring_created_ns: int = 0):
        os.makedirs(directory, exist_ok=True)
        self.created_ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.created_ns / 1e9))
        # the name sorts by time, then position; the nanoseconds keep two files of a second apart
        self.path = os.path.join(directory, f"{stamp}-{self.created_ns:020d}-{first_position:020d}{FILE_SUFFIX}")
        self.record_size = record_size
        self.first_position = first_position
        self.count = 0
        self.f = open(self.path, "xb")
        try:    # the header on disk, and the file in its directory, before any record is written
            header = _header(record_type, record_size, first_position, ring_name, ring_created_ns,
                             table_json, self.created_ns)
            view = memoryview(header)
            while view:             # a short write (a full disk) goes on until it raises
                view = view[os.write(self.f.fileno(), view):]
            self.f.seek(len(header))
            os.fsync(self.f.fileno())
            _fsync_directory(directory)
        except BaseException:
            self.f.close()
            os.unlink(self.path)
            raise

    @property
    def next_position(self) -> int:
        return self.first_position + self.count

    @property
    def size(self) -> int:
        return self.f.tell()

    def append(self, records) -> None:
        """Append records (a contiguous array of the ring's record dtype, or bytes)."""
        if isinstance(records, np.ndarray):     # record dtypes overlap fields (unions): as bytes
            data = memoryview(np.ascontiguousarray(records).view(np.uint8).reshape(-1))
        else:
            data = memoryview(records).cast("B")
        if len(data) % self.record_size:
            raise ValueError(f"{len(data)} bytes is not a whole number of {self.record_size}-byte records")
        self.f.write(data)
        self.count += len(data) // self.record_size

    def flush(self, fsync: bool = False) -> None:
        self.f.flush()
        if fsync:
            os.fsync(self.f.fileno())

    def close(self) -> None:
        if not self.f.closed:
            self.flush(fsync=True)
            self.f.close()


class JournalFile:
    """One journal file read back: its header, and its records as a read-only memory map."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(FIXED_SIZE)
            if not MAGIC.startswith(head[:8]) or (len(head) == FIXED_SIZE and head[:8] != MAGIC):
                raise JournalFileError(f"{path}: not a TTQuant journal file")
            if len(head) < FIXED_SIZE:
                raise TornHeader(f"{path}: {len(head)} bytes, shorter than a journal header")
            (_, version, self.record_type, self.record_size, self.header_size, self.created_ns,
             self.ring_created_ns, self.first_position, ring, table_len) = FIXED.unpack(head[:FIXED.size])
            if version != LAYOUT_VERSION:
                raise JournalFileError(f"{path}: layout version {version}, this build reads {LAYOUT_VERSION}")
            self.ring_name = ring.rstrip(b"\0").decode()
            self._table_len = table_len
        try:
            self.dtype = dtype_for(self.record_type)
        except KeyError as exc:
            raise JournalFileError(f"{path}: {exc.args[0]}") from None
        if self.dtype.itemsize != self.record_size:
            raise JournalFileError(f"{path}: records of {self.record_size} bytes, this build's "
                                   f"record type {self.record_type} has {self.dtype.itemsize}")
        body = os.path.getsize(path) - self.header_size
        self.count = max(body, 0) // self.record_size
        self.torn_bytes = max(body, 0) % self.record_size      # a writer killed mid-record

    @property
    def next_position(self) -> int:
        return self.first_position + self.count

    @property
    def records(self) -> np.ndarray:
        if self.count == 0:
            return np.zeros(0, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.header_size,
                         shape=(self.count,))

    @property
    def table_json(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(FIXED_SIZE)
            return f.read(self._table_len).decode()

    @property
    def instruments(self) -> InstrumentTable | None:
        """The instrument table the recorder saw when it opened the file (None if it had none)."""
        text = self.table_json
        if not text or not json.loads(text):
            return None
        return InstrumentTable.from_json(text, f"{self.path} (header)")

    def __repr__(self):
        return (f"JournalFile({self.path!r}, ring={self.ring_name}, positions "
                f"{self.first_position}..{self.next_position - 1}, torn_bytes={self.torn_bytes})")


def journal_files(directory: str) -> list[JournalFile]:
    """Every journal file of one ring's directory: ring by ring (a ring made again starts its
    positions again), each ring's files by position; files cut before the end of their header
    are left out (they hold nothing) and logged."""
    if not os.path.isdir(directory):
        return []
    files = []
    for name in os.listdir(directory):
        if _NAME.match(name):
            try:
                files.append(JournalFile(os.path.join(directory, name)))
            except TornHeader as exc:
                log.warning("%s", exc)
    return sorted(files, key=lambda f: (f.ring_created_ns, f.first_position, f.created_ns))


def journal_directories(directory: str) -> list[str]:
    """The ring directories at or below `directory` that hold journal files (the recorder
    writes one per ring: <dir>/<rings>.<kind>/), sorted; [] when there is none."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        if any(_NAME.match(n) for n in names):
            found.append(root)
    return found


def read_journal(directory: str, ring_created_ns: int | None = None):
    """(records, their ring positions, gaps as (first missing, count)) of one ring in a journal
    directory: the ring made at ring_created_ns, by default the latest one."""
    files = journal_files(directory)
    if files:
        ring = files[-1].ring_created_ns if ring_created_ns is None else ring_created_ns
        files = [f for f in files if f.ring_created_ns == ring and f.count]
    if not files:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint64), []
    # as bytes: numpy copies a dtype with overlapping fields (unions) field by field, not whole
    records = np.concatenate([f.records.view(np.uint8).reshape(-1) for f in files]).view(files[0].dtype)
    positions = np.concatenate([np.arange(f.first_position, f.next_position, dtype=np.uint64) for f in files])
    gaps = [(a.next_position, b.first_position - a.next_position)
            for a, b in zip(files, files[1:]) if b.first_position > a.next_position]
    return records, positions, gaps


def between(records, ts, from_ns: int = 0, to_ns: int = 0):
    """The records whose time (ts, one per record) is in [from_ns, to_ns), 0 meaning no bound;
    the records themselves when there is none."""
    if not from_ns and not to_ns:
        return records
    keep = np.ones(len(records), bool)
    if from_ns:
        keep &= ts >= from_ns
    if to_ns:
        keep &= ts < to_ns
    # as bytes: numpy copies a dtype with overlapping fields (unions) field by field, not whole
    rows = records.view(np.uint8).reshape(len(records), -1)[keep]
    return np.ascontiguousarray(rows).view(records.dtype).reshape(-1)
