"""Telemetry segments: a process's named counters, gauges and latency histograms in shared memory.

`/ttq.<rings>.telemetry.<process>` (core/rings/names.py) is a board-kind ring segment of group
records (telemetry.pxd). Slot 0 says who writes it (role, process, its own labels); every other
slot is a group of counters or gauges with their names, or one histogram. A writer hands out
numpy views of the values, in place in the segment, so the owning thread counts with plain
stores (`counts[i] += 1` from Python, a pointer and `ttq_hist_observe` from Cython); a reader
copies them. A new run starts from an empty segment under a new writer epoch, which is how
readers tell a restart from a counter going back.

Names follow Prometheus: `orders_total`, `messages_total{type=trade}`, `position{instrument=7}`.
"""
from libc.stdint cimport uint32_t, uint64_t, int32_t
from libc.string cimport memset, memcpy

import re

import numpy as np

from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_store_release_u64
from ttquant.core.rings.segment cimport RingSegment, ring_view

from ttquant.core.records import RecordType
from ttquant.core.rings.names import ring_name, telemetry_segment
from ttquant.core.rings.segment import KIND_BOARD, RingError, list_segments

__all__ = ["TelemetryWriter", "Histogram", "read_telemetry", "telemetry_segments", "observe", "bucket_of",
           "bucket_upper_bounds", "bucket_quantile", "parse_series_name", "HIST_BUCKETS", "HIST_VALUES",
           "RECORD_TELEMETRY",           "COUNTERS", "GAUGES", "HISTOGRAM"]

RECORD_TELEMETRY = int(RecordType.TELEMETRY)
RECORD_SIZE = sizeof(telemetry_group)
HIST_VALUES = TELEMETRY_VALUES
HIST_BUCKETS, HIST_SUB_BITS = TTQ_HIST_BUCKETS, TTQ_HIST_SUB_BITS
COUNTERS, GAUGES, HISTOGRAM = "counter", "gauge", "histogram"
_KINDS = {TELEMETRY_COUNTERS: COUNTERS, TELEMETRY_GAUGES: GAUGES, TELEMETRY_HISTOGRAM: HISTOGRAM}
_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_LABEL_VALUE = re.compile(r"[^,={}\"\\\n]*\Z")
_SERIES = re.compile(r"([a-z_][a-z0-9_]*)(?:\{(.*)\})?\Z")


def bucket_of(uint64_t v):
    return ttq_hist_bucket(v)


def bucket_upper_bounds():
    """The exclusive upper bound of each histogram bucket (the last one: None, the overflow)."""
    bounds = [b + 1 for b in range(8)]
    for b in range(8, HIST_BUCKETS):
        e, sub = 3 + ((b - 8) >> HIST_SUB_BITS), (b - 8) & 3
        bounds.append((4 + sub + 1) << (e - HIST_SUB_BITS))
    bounds[HIST_BUCKETS - 1] = None          # wraparound is off in our builds
    return bounds


def bucket_quantile(buckets, q):
    """The upper bound of the bucket holding quantile q of a histogram's buckets (a sequence or
    {bucket: count}): a value no larger than 25 % above the true one; None when it is empty or
    in the overflow bucket."""
    items = sorted(buckets.items()) if isinstance(buckets, dict) else enumerate(buckets)
    counts = [(int(b), int(c)) for b, c in items if c]
    total = sum(c for _, c in counts)
    if not total:
        return None
    seen, bounds = 0, bucket_upper_bounds()
    for b, c in counts:
        seen += c
        if seen >= q * total:
            return bounds[b]
    return bounds[counts[len(counts) - 1][0]]


def observe(hist, uint64_t value):
    """One observation into a Histogram or a histogram's values array."""
    if isinstance(hist, Histogram):
        (<Histogram>hist).observe(value)
        return
    cdef uint64_t[::1] view = hist
    if view.shape[0] < TELEMETRY_VALUES:
        raise ValueError(f"a histogram has {TELEMETRY_VALUES} values")
    ttq_hist_observe(&view[0], value)


cdef class Histogram:
    """One histogram in a telemetry segment: observe(ns) from Python at the cost of a C call;
    `values` (count, sum, buckets) for Cython writers that keep the pointer."""

    def __init__(self, values):
        cdef uint64_t[::1] view = values
        if view.shape[0] < TELEMETRY_VALUES:
            raise ValueError(f"a histogram has {TELEMETRY_VALUES} values")
        self.values = values
        self.hist = &view[0]

    cpdef observe(self, uint64_t value):
        ttq_hist_observe(self.hist, value)

    @property
    def count(self):
        return int(self.hist[0])


def _labels_text(labels):
    if not labels:
        return ""
    parts = []
    for k, v in labels.items():
        v = str(v)
        if not _NAME.match(k) or not _LABEL_VALUE.match(v):
            raise ValueError(f"label {k}={v!r}: the name must match [a-z_][a-z0-9_]* and the value "
                             "may not hold , = {{ }} quotes or newlines")
        parts.append(f"{k}={v}")
    return ",".join(parts)


def _parse_labels(text):
    out = {}
    for part in text.split(","):
        if part:
            k, _, v = part.partition("=")
            out[k] = v
    return out


def parse_series_name(text):
    """"messages_total{type=trade}" -> ("messages_total", {"type": "trade"})."""
    m = _SERIES.match(text)
    parts = (m.group(2) or "").split(",") if m is not None and m.group(2) is not None else []
    if m is None or any("=" not in p or not _NAME.match(p.partition("=")[0]) for p in parts):
        raise ValueError(f"series name {text!r} is not name or name{{k=v,...}}")
    return m.group(1), _parse_labels(m.group(2) or "")


cdef class TelemetryWriter:
    """The owning process's side: groups registered once, then counted in place."""
    cdef readonly RingSegment segment
    cdef readonly str process
    cdef ring_view ring

    def __init__(self, str rings, str process, str role, labels=None, int groups=64, int mode=0o660,
                 group=None, str name=None):
        self.process = process
        name = name or telemetry_segment(rings, process)
        # slot 0 is the process's own; room for at least `groups` more (a power of two in all)
        self.segment = RingSegment.create_or_attach(name, KIND_BOARD, RECORD_TELEMETRY, RECORD_SIZE,
                                                    1 << max(1, groups.bit_length()), mode, group)
        try:
            self.segment.acquire_writer()
        except BaseException:
            self.segment.close()
            raise
        self.ring = self.segment.view()
        # a previous run's groups and counts are not this run's: the segment starts empty
        # (readers see the new writer epoch)
        cdef uint64_t used = ttq_load_acquire_u64(&self.ring.header.write_position)
        ttq_store_release_u64(&self.ring.header.write_position, 0)
        if used:
            memset(self.ring.slots, 0, used * self.ring.slot_size)
        self._add(TELEMETRY_INFO, 0, 0, _labels_text({"role": role, "process": process, **(labels or {})}), b"")
        self.segment.heartbeat()

    cdef telemetry_group *_add(self, uint32_t kind, uint32_t count, int32_t scale, str labels,
                               bytes names) except NULL:
        if self.segment.closed:
            raise RingError(f"telemetry writer {self.process} is closed")
        raw_labels = labels.encode()
        if len(raw_labels) >= TELEMETRY_LABEL_BYTES:
            raise ValueError(f"labels {labels!r} are longer than {TELEMETRY_LABEL_BYTES - 1} bytes")
        if len(names) > TELEMETRY_NAME_BYTES:
            raise ValueError(f"the names of one group take more than {TELEMETRY_NAME_BYTES} bytes: split it")
        cdef uint64_t i = ttq_load_acquire_u64(&self.ring.header.write_position)
        if i >= self.ring.capacity:
            raise RingError(f"{self.segment.name}: no room for another telemetry group "
                            f"({self.ring.capacity - 1} of them)")
        cdef telemetry_group *g = <telemetry_group *>(self.ring.slots + i * self.ring.slot_size + 8)
        memset(g, 0, sizeof(telemetry_group))
        g.kind, g.count, g.scale = kind, count, scale
        memcpy(g.labels, <char *>raw_labels, len(raw_labels))
        memcpy(g.names, <char *>names, len(names))
        ttq_store_release_u64(&self.ring.header.write_position, i + 1)
        return g

    cdef object _values(self, telemetry_group *g, Py_ssize_t n, object dtype):
        arr = np.asarray(<uint64_t[:n]>&g.values[0]).view(dtype)
        arr.flags.writeable = True
        return arr

    def counters(self, names, labels=None):
        """A uint64 array, one counter per name, zero, living in the segment."""
        names = list(names)
        raw = self._names(names)
        cdef telemetry_group *g = self._add(TELEMETRY_COUNTERS, len(names), 0, _labels_text(labels), raw)
        return self._values(g, len(names), np.uint64)

    def gauges(self, names, labels=None, int scale=0):
        """An int64 array, one gauge per name at 10**-scale (position in lots: scale 8), zero."""
        names = list(names)
        raw = self._names(names)
        cdef telemetry_group *g = self._add(TELEMETRY_GAUGES, len(names), scale, _labels_text(labels), raw)
        return self._values(g, len(names), np.int64)

    def histogram(self, str name, labels=None, int scale=-9):
        """A Histogram of values in 10**scale seconds (ns), its values (count, sum, buckets) in
        the segment."""
        if not _NAME.match(name):
            raise ValueError(f"histogram name {name!r} must match [a-z_][a-z0-9_]*")
        cdef telemetry_group *g = self._add(TELEMETRY_HISTOGRAM, HIST_BUCKETS, scale, _labels_text(labels),
                                            name.encode() + b"\0")
        return Histogram(self._values(g, TELEMETRY_VALUES, np.uint64))

    @staticmethod
    def _names(names):
        if not names or len(names) > TELEMETRY_MAX_VALUES:
            raise ValueError(f"a group holds 1..{TELEMETRY_MAX_VALUES} values, not {len(names)}")
        for n in names:
            _labels_text(parse_series_name(n)[1])
        return b"".join(n.encode() + b"\0" for n in names)

    def heartbeat(self):
        self.segment.heartbeat()

    @property
    def name(self):
        return self.segment.name

    def close(self):
        self.segment.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def telemetry_segments(rings=None):
    """Names of every telemetry segment in /dev/shm (of one stack when rings is given)."""
    prefix = ring_name(rings, "telemetry") + "." if rings else None
    return [n for n in list_segments()
            if n.split(".")[2:3] == ["telemetry"] and (prefix is None or n.startswith(prefix))]


def read_telemetry(str name):
    """A copy of one segment: {"name", "rings", "labels" (the process's: role, process, ...),
    "writer_pid", "writer_alive", "epoch", "heartbeat_age_ns", "series": [...]}, each series a dict
    {"kind", "name", "id" (the name as written), "labels" (the group's and the name's), and "value"
    (counter: int, gauge: int or float by scale) or "count", "sum", "buckets" (histogram: numpy
    copy), "scale"}."""
    cdef RingSegment seg = RingSegment.attach(name, ring_kind=KIND_BOARD, record_type=RECORD_TELEMETRY,
                                              record_size=RECORD_SIZE, read_only=True)
    cdef ring_view ring = seg.view()
    cdef telemetry_group *g
    cdef uint64_t i, used
    try:
        status = seg.status()
        h = seg.header_fields()
        out = {"name": name, "rings": name.split(".")[1], "labels": {}, "writer_pid": h["writer_pid"],
               "writer_alive": status["writer_alive"], "epoch": h["writer_epoch"],
               "heartbeat_age_ns": status["heartbeat_age_ns"] if h["heartbeat_ns"] else None, "series": []}
        used = ttq_load_acquire_u64(&ring.header.write_position)
        for i in range(min(used, ring.capacity)):
            g = <telemetry_group *>(ring.slots + i * ring.slot_size + 8)
            group_labels = _parse_labels((<bytes>g.labels[:TELEMETRY_LABEL_BYTES]).split(b"\0", 1)[0].decode())
            if g.kind == TELEMETRY_INFO:
                out["labels"].update(group_labels)
                continue
            kind = _KINDS.get(g.kind)
            if kind is None:
                continue                # a kind a newer writer knows: skipped, not misread
            names = (<bytes>g.names[:TELEMETRY_NAME_BYTES]).split(b"\0")
            values = np.asarray(<uint64_t[:TELEMETRY_VALUES]>&g.values[0]).copy()
            if kind == HISTOGRAM:
                out["series"].append({"kind": kind, "name": names[0].decode(), "id": names[0].decode(),
                                      "labels": group_labels,
                                      "scale": g.scale, "count": int(values[0]), "sum": int(values[1]),
                                      "buckets": values[2:2 + HIST_BUCKETS]})
                continue
            if kind == GAUGES:
                values = values.view(np.int64)
            for k in range(min(g.count, TELEMETRY_MAX_VALUES)):
                raw = names[k].decode()
                base, labels = parse_series_name(raw)
                value = int(values[k])          # (a local that is also a float would be typed double)
                out["series"].append({"kind": kind, "name": base, "id": raw, "labels": {**group_labels, **labels},
                                      "value": value / 10 ** g.scale if kind == GAUGES and g.scale else value,
                                      "scale": g.scale})
        return out
    finally:
        seg.close()
