# cython: language_level=3
"""Ring segments in POSIX shared memory: create, attach, validate, role locks, unlink.

The byte layout is ttq_ring_header in core/includes/ring_layout.h. A segment is created
once (mode 0660, group configurable) and outlives every process that maps it; writers and
readers attach to it, and only an explicit unlink removes it.
"""
import errno as _errno
import grp
import os
import stat
import time
import uuid
import weakref

import posix_ipc

from posix.mman cimport (
    mmap, munmap, PROT_NONE, PROT_READ, PROT_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
    MAP_SHARED, MAP_FAILED,
)
from posix.unistd cimport close as close_fd
from libc.errno cimport errno
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE
from libc.stdint cimport uint32_t, uint64_t, int64_t

from ttquant.core.includes.atomics cimport (
    ttq_load_acquire_u64, ttq_load_relaxed_u64, ttq_store_release_u64, ttq_fetch_add_u64,
    ttq_load_relaxed_i64, ttq_store_relaxed_i64, ttq_load_relaxed_u32, ttq_now_ns,
    ttq_coarse_now_ns, ttq_fence_acquire, ttq_membarrier_register_writer,
)
from ttquant.core.records import RECORD_SIZES
from ttquant.core.rings.names import SHM_DIR, ring_name
from ttquant.core.rings.wake cimport wake_readers
from ttquant.core.includes.ofd_lock cimport ttq_ofd_trylock, ttq_ofd_unlock, ttq_ofd_is_held
from ttquant.core.includes.ring_layout cimport (
    ttq_ring_header, TTQ_RING_MAGIC, TTQ_LAYOUT_VERSION, TTQ_HEADER_SIZE, TTQ_KIND_BROADCAST,
    TTQ_KIND_SPSC, TTQ_KIND_BOARD, TTQ_LOCK_WRITER, TTQ_LOCK_READER, ttq_slot_size_for, ttq_stamp_done,
)

cdef extern from "sys/mman.h" nogil:
    int MAP_POPULATE

__all__ = [
    "RingSegment", "RingError", "RingLayoutError", "RingNotFoundError", "RingBusyError",
    "RingFullError", "ring_name", "list_segments", "unlink", "KIND_BROADCAST", "KIND_SPSC", "KIND_BOARD",
    "KIND_NAMES", "SHM_DIR", "LAYOUT_VERSION", "HEADER_SIZE", "MAX_RECORD_SIZE",
]

KIND_BROADCAST = TTQ_KIND_BROADCAST
KIND_SPSC = TTQ_KIND_SPSC
KIND_BOARD = TTQ_KIND_BOARD
KIND_NAMES = {TTQ_KIND_BROADCAST: "broadcast", TTQ_KIND_SPSC: "spsc", TTQ_KIND_BOARD: "board"}
LAYOUT_VERSION = TTQ_LAYOUT_VERSION
HEADER_SIZE = TTQ_HEADER_SIZE
MAX_RECORD_SIZE = 4096 - 8
MAX_CAPACITY = 1 << 30
# How long an attach waits for a segment another process is creating right now.
INIT_WAIT_S = 2.0


# Segments holding a role in this process: a forked child must not inherit the role locks.
_role_holders = weakref.WeakSet()


# -1 unknown, 0 no, 1 yes: this process registered for sleepers' membarrier (see wake.pxd).
cdef int _membarrier_registered = -1


cdef bint _writer_needs_fence():
    global _membarrier_registered
    if _membarrier_registered < 0:
        _membarrier_registered = ttq_membarrier_register_writer()
    return not _membarrier_registered


def _drop_roles_in_child():
    global _membarrier_registered
    _membarrier_registered = -1       # the child is a new mm: it registers for itself
    for seg in list(_role_holders):
        (<RingSegment>seg)._forget_roles()
    _role_holders.clear()


os.register_at_fork(after_in_child=_drop_roles_in_child)


class RingError(Exception):
    """Base of every ring error."""


class RingLayoutError(RingError, ValueError):
    """A segment's header does not match what the caller expects, or is not a ring at all."""


class RingNotFoundError(RingError, FileNotFoundError):
    """No segment of that name."""


class RingBusyError(RingError):
    """Another live process holds the writer (or SPSC reader) role of that ring."""


class RingFullError(RingError):
    """An SPSC push found the ring full; nothing was written or overwritten."""


def _check_name(name):
    if not isinstance(name, str) or not name.startswith("/ttq.") or "/" in name[1:]:
        raise ValueError(f"ring name {name!r} must look like /ttq.<venue>.<kind>[.<owner>]")


def list_segments():
    """Names of every TTQuant segment in SHM_DIR, sorted (files beside them, such as
    instrument tables, control flags and instance locks, have an extension and are left out)."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        if not entry.startswith("ttq.") or entry.endswith((".json", ".ctl", ".lock")):
            continue
        try:
            if stat.S_ISREG(os.stat(os.path.join(SHM_DIR, entry)).st_mode):
                names.append("/" + entry)
        except FileNotFoundError:
            pass            # unlinked while we looked
    return sorted(names)


def unlink(name):
    """Remove a segment's name; processes that mapped it keep their mapping. True if it existed."""
    _check_name(name)
    try:
        posix_ipc.unlink_shared_memory(name)
        return True
    except posix_ipc.ExistentialError:
        return False


def _resolve_gid(group):
    if group is None:
        group = os.environ.get("TTQ_SHM_GROUP", "ttquant")
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return -1      # the default group is optional on dev machines
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"group {group!r} does not exist") from None


cdef class RingSegment:
    """A mapped ring segment. Use create_or_attach() / attach(), not the constructor."""

    def __cinit__(self):
        self.fd = -1
        self.base = NULL

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL
        if self.fd >= 0:            # posix_ipc never closes it; a leaked fd would keep our role
            close_fd(self.fd)
            self.fd = -1

    cdef void _forget_roles(self) noexcept:
        # In a forked child: drop every reference to the parent's open file (fd and mapping
        # both keep its role lock alive) without unlocking it; the PROT_NONE stand-in makes
        # any use of the inherited handle fault loudly instead of writing into the ring.
        if self.base != NULL:
            mmap(self.base, self.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        if self.fd >= 0:
            close_fd(self.fd)
            self.fd = -1
        self.holds_writer = self.holds_reader = False
        if self._shm is not None:
            self._shm = None

    @staticmethod
    def create_or_attach(name, uint32_t ring_kind, uint32_t record_type, uint32_t record_size,
                         uint64_t capacity, int mode=0o660, group=None):
        """Create the ring, or attach to the existing one after checking it is the same ring."""
        _check_name(name)
        if ring_kind not in KIND_NAMES:
            raise ValueError(f"ring kind {ring_kind} is not one of {sorted(KIND_NAMES)}")
        if capacity < 2 or capacity > MAX_CAPACITY or (capacity & (capacity - 1)) != 0:
            raise ValueError(f"ring {name}: capacity {capacity} must be a power of two in [2, 2**30]")
        if record_size == 0 or record_size > MAX_RECORD_SIZE:
            raise ValueError(f"ring {name}: record size {record_size} must be in [1, {MAX_RECORD_SIZE}]")
        cdef uint32_t slot_size = ttq_slot_size_for(record_size)
        cdef uint64_t size = TTQ_HEADER_SIZE + capacity * slot_size
        gid = _resolve_gid(group)
        if os.path.exists(SHM_DIR + name):
            return RingSegment.attach(name, ring_kind=ring_kind, record_type=record_type,
                                      record_size=record_size, capacity=capacity)
        # Build it complete under a private name, then link it in: nobody ever sees a half-made ring.
        tmp = f"{name}.init{os.getpid()}x{uuid.uuid4().hex[:8]}"
        shm = posix_ipc.SharedMemory(tmp, posix_ipc.O_CREX, mode=mode)
        cdef ttq_ring_header *h
        cdef RingSegment seg = RingSegment.__new__(RingSegment)
        seg.name = name
        seg.read_only = False
        seg._shm = shm
        seg.fd = shm.fd
        seg.size = size
        try:
            try:
                os.fchmod(seg.fd, mode)       # shm_open applied the umask; the mode is the contract
                if gid >= 0:
                    os.fchown(seg.fd, -1, gid)
                os.posix_fallocate(seg.fd, 0, size)     # no space: fail now, not SIGBUS later
            except OSError as exc:
                raise OSError(exc.errno, f"ring {name}: cannot create it: {exc.strerror}") from None
            seg._map()
            h = seg.header
            h.layout_version = TTQ_LAYOUT_VERSION
            h.ring_kind = ring_kind
            h.record_type = record_type
            h.record_size = record_size
            h.slot_size = slot_size
            h.capacity = <uint32_t>capacity
            h.segment_size = size
            h.created_ns = ttq_now_ns()
            ttq_store_release_u64(&h.magic, TTQ_RING_MAGIC)
            try:
                os.link(SHM_DIR + tmp, SHM_DIR + name)
            except FileExistsError:             # another process created it first: use theirs
                seg.close()
                return RingSegment.attach(name, ring_kind=ring_kind, record_type=record_type,
                                          record_size=record_size, capacity=capacity)
        except BaseException:
            seg.close()
            raise
        finally:
            posix_ipc.unlink_shared_memory(tmp)
        return seg

    @staticmethod
    def attach(name, ring_kind=None, record_type=None, record_size=None, capacity=None,
               bint read_only=False):
        """Map an existing ring and check its header; RingLayoutError names every mismatch."""
        _check_name(name)
        try:
            shm = posix_ipc.SharedMemory(name, 0, read_only=read_only)
        except posix_ipc.ExistentialError:
            raise RingNotFoundError(f"ring {name} does not exist") from None
        except posix_ipc.PermissionsError as exc:
            raise PermissionError(f"ring {name}: {exc}") from None
        cdef RingSegment seg = RingSegment.__new__(RingSegment)
        seg.name = name
        seg.read_only = read_only
        seg._shm = shm
        seg.fd = shm.fd
        try:
            seg._wait_initialised()
            seg._map()
            seg._validate(ring_kind, record_type, record_size, capacity)
        except BaseException:
            seg.close()
            raise
        return seg

    def _wait_initialised(self):
        # The creator sizes the segment, then writes the magic last; give it a moment.
        deadline = time.monotonic() + INIT_WAIT_S
        while True:
            size = os.fstat(self.fd).st_size
            if size >= TTQ_HEADER_SIZE:
                magic = int.from_bytes(os.pread(self.fd, 8, 0), "little")
                if magic != 0:
                    self.size = size
                    return
            if time.monotonic() > deadline:
                if size < TTQ_HEADER_SIZE:
                    raise RingLayoutError(
                        f"ring {self.name}: truncated segment, {size} bytes is less than the "
                        f"{TTQ_HEADER_SIZE}-byte header")
                raise RingLayoutError(f"ring {self.name}: header never initialised (magic is 0); "
                                      f"a creator died mid-create - unlink it")
            time.sleep(0.005)

    cdef int _map(self) except -1:
        cdef int prot = PROT_READ if self.read_only else PROT_READ | PROT_WRITE
        cdef void *p = mmap(NULL, self.size, prot, MAP_SHARED | MAP_POPULATE, self.fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, f"ring {self.name}: mmap of {self.size} bytes failed: "
                                 f"{os.strerror(errno)}")
        self.base = <char *>p
        self.header = <ttq_ring_header *>p
        return 0

    def _validate(self, ring_kind, record_type, record_size, capacity):
        cdef ttq_ring_header *h
        h = self.header
        name = self.name
        if h.magic != TTQ_RING_MAGIC:
            raise RingLayoutError(f"ring {name}: not a TTQuant ring (magic 0x{h.magic:016x}, "
                                  f"expected 0x{TTQ_RING_MAGIC:016x})")
        if h.layout_version != TTQ_LAYOUT_VERSION:
            raise RingLayoutError(f"ring {name}: layout version {h.layout_version}, this build "
                                  f"reads version {TTQ_LAYOUT_VERSION}")
        if h.ring_kind not in KIND_NAMES:
            raise RingLayoutError(f"ring {name}: unknown ring kind {h.ring_kind}")
        cap = h.capacity
        if cap < 2 or (cap & (cap - 1)) != 0:
            raise RingLayoutError(f"ring {name}: capacity {cap} in the header is not a power of two")
        if h.record_size == 0 or h.record_size > MAX_RECORD_SIZE:
            raise RingLayoutError(f"ring {name}: record size {h.record_size} in the header is "
                                  f"outside [1, {MAX_RECORD_SIZE}]")
        known = RECORD_SIZES.get(h.record_type)
        if known is not None and h.record_size != known:
            raise RingLayoutError(f"ring {name}: record type {h.record_type} is {known} bytes, "
                                  f"the header says {h.record_size}")
        if h.slot_size != ttq_slot_size_for(h.record_size):
            raise RingLayoutError(f"ring {name}: slot size {h.slot_size} does not fit record "
                                  f"size {h.record_size}")
        expected_size = TTQ_HEADER_SIZE + <uint64_t>cap * h.slot_size
        if h.segment_size != expected_size:
            raise RingLayoutError(f"ring {name}: header says {h.segment_size} bytes, its "
                                  f"capacity and slot size need {expected_size}")
        if self.size < expected_size:
            raise RingLayoutError(f"ring {name}: truncated segment, {self.size} bytes but the "
                                  f"header needs {expected_size}")
        if ring_kind is not None and h.ring_kind != ring_kind:
            raise RingLayoutError(f"ring {name}: is a {KIND_NAMES[h.ring_kind]} ring, "
                                  f"expected {KIND_NAMES.get(ring_kind, ring_kind)}")
        if record_type is not None and h.record_type != record_type:
            raise RingLayoutError(f"ring {name}: carries record type {h.record_type}, "
                                  f"expected {record_type}")
        if record_size is not None and h.record_size != record_size:
            raise RingLayoutError(f"ring {name}: record size {h.record_size}, expected {record_size}")
        if capacity is not None and cap != capacity:
            raise RingLayoutError(f"ring {name}: capacity {cap}, expected {capacity}")

    cdef ring_view view(self):
        cdef ring_view v
        v.header = self.header
        v.slots = self.base + TTQ_HEADER_SIZE
        v.capacity = self.header.capacity
        v.mask = v.capacity - 1
        v.slot_size = self.header.slot_size
        v.record_size = self.header.record_size
        v.writer_fences = self.writer_fences if self.holds_writer else True
        return v

    cpdef acquire_writer(self):
        """Take the writer role (an OFD lock the kernel drops if we die) and bump the epoch."""
        cdef ttq_ring_header *h
        self._check_open()
        self._lock(TTQ_LOCK_WRITER, "writer", self.header.writer_pid)
        self.holds_writer = True
        _role_holders.add(self)
        h = self.header
        self.writer_fences = _writer_needs_fence()
        h.writer_fences = self.writer_fences      # before the first publish of this writer
        ttq_fetch_add_u64(&h.writer_epoch, 1)
        ttq_store_relaxed_i64(&h.writer_pid, os.getpid())
        ttq_store_relaxed_i64(&h.writer_attached_ns, ttq_now_ns())
        ttq_store_relaxed_i64(&h.heartbeat_ns, ttq_coarse_now_ns())

    cpdef acquire_reader(self):
        """Take the SPSC reader role and bump the reader epoch."""
        cdef ttq_ring_header *h
        self._check_open()
        self._lock(TTQ_LOCK_READER, "reader", self.header.reader_pid)
        self.holds_reader = True
        _role_holders.add(self)
        h = self.header
        ttq_fetch_add_u64(&h.reader_epoch, 1)
        ttq_store_relaxed_i64(&h.reader_pid, os.getpid())
        ttq_store_relaxed_i64(&h.reader_heartbeat_ns, ttq_coarse_now_ns())

    def _lock(self, long byte, role, pid):
        if self.read_only:
            raise PermissionError(f"ring {self.name}: mapped read-only, cannot take the {role} role")
        rc = ttq_ofd_trylock(self.fd, byte)
        if rc in (_errno.EAGAIN, _errno.EACCES):
            raise RingBusyError(f"ring {self.name} already has a live {role} (pid {pid})")
        if rc != 0:
            raise OSError(rc, f"ring {self.name}: cannot lock the {role} role: {os.strerror(rc)}")

    def writer_alive(self):
        """True while some process holds the writer role (the kernel drops it on death)."""
        self._check_open()
        if self.holds_writer:
            return True
        return ttq_ofd_is_held(self.fd, TTQ_LOCK_WRITER) == 1

    def reader_alive(self):
        self._check_open()
        if self.holds_reader:
            return True
        return ttq_ofd_is_held(self.fd, TTQ_LOCK_READER) == 1

    def heartbeat(self):
        """Writer's sign of life (coarse wall clock, like the one stamped while publishing)."""
        self._check_writable()
        ttq_store_relaxed_i64(&self.header.heartbeat_ns, ttq_coarse_now_ns())

    def reader_heartbeat(self):
        self._check_writable()
        ttq_store_relaxed_i64(&self.header.reader_heartbeat_ns, ttq_coarse_now_ns())

    def _check_writable(self):
        self._check_open()
        if self.read_only:
            raise PermissionError(f"ring {self.name}: mapped read-only")

    def status(self):
        """Who writes and reads this ring, and how recently they showed signs of life."""
        cdef ttq_ring_header *h
        self._check_open()
        now = ttq_now_ns()
        h = self.header
        return {
            "writer_pid": ttq_load_relaxed_i64(&h.writer_pid),
            "writer_alive": self.writer_alive(),
            "writer_epoch": ttq_load_relaxed_u64(&h.writer_epoch),
            "heartbeat_age_ns": now - ttq_load_relaxed_i64(&h.heartbeat_ns),
            "write_position": ttq_load_acquire_u64(&h.write_position),
            "reader_pid": ttq_load_relaxed_i64(&h.reader_pid),
            "reader_alive": self.reader_alive(),
            "reader_epoch": ttq_load_relaxed_u64(&h.reader_epoch),
            "reader_heartbeat_age_ns": now - ttq_load_relaxed_i64(&h.reader_heartbeat_ns),
            "replaced": self.renamed(),     # the name now points at another segment (or none)
        }

    def header_fields(self):
        """Every header field, read once (a snapshot for tools, not for hot loops)."""
        cdef ttq_ring_header *h
        self._check_open()
        h = self.header
        return {
            "magic": h.magic, "layout_version": h.layout_version, "ring_kind": h.ring_kind,
            "record_type": h.record_type, "record_size": h.record_size, "slot_size": h.slot_size,
            "capacity": h.capacity, "segment_size": h.segment_size, "created_ns": h.created_ns,
            "write_position": ttq_load_acquire_u64(&h.write_position),
            "writer_epoch": ttq_load_relaxed_u64(&h.writer_epoch),
            "writer_pid": ttq_load_relaxed_i64(&h.writer_pid),
            "heartbeat_ns": ttq_load_relaxed_i64(&h.heartbeat_ns),
            "writer_attached_ns": ttq_load_relaxed_i64(&h.writer_attached_ns),
            "rejected_full": ttq_load_relaxed_u64(&h.rejected_full),
            "wakeups": ttq_load_relaxed_u64(&h.wakeups),
            "writer_fences": h.writer_fences,
            "read_position": ttq_load_acquire_u64(&h.read_position),
            "reader_epoch": ttq_load_relaxed_u64(&h.reader_epoch),
            "reader_pid": ttq_load_relaxed_i64(&h.reader_pid),
            "reader_heartbeat_ns": ttq_load_relaxed_i64(&h.reader_heartbeat_ns),
            "wake_word": ttq_load_relaxed_u32(&h.wake_word),
            "sleep_announced": bool(ttq_load_relaxed_u32(&h.wake_word) & 1),
        }

    def read_at(self, uint64_t position):
        """The record published at position as bytes, or None if it is not (or no longer)
        there; a seqlock read, safe while the writer runs. For tools, not hot loops."""
        cdef ttq_ring_header *h
        cdef char *slot
        cdef uint64_t before, after
        self._check_open()
        h = self.header
        slot = self.base + TTQ_HEADER_SIZE + (position & (h.capacity - 1)) * h.slot_size
        before = ttq_load_acquire_u64(<uint64_t *>slot)
        if before != ttq_stamp_done(position):
            return None
        record = slot[8:8 + h.record_size]
        ttq_fence_acquire()
        after = ttq_load_relaxed_u64(<uint64_t *>slot)
        return record if after == before else None

    def _check_open(self):
        if self.base == NULL:
            raise RingError(f"ring {self.name} is closed")

    @property
    def closed(self):
        return self.base == NULL

    @property
    def inode(self):
        return os.fstat(self.fd).st_ino if self.fd >= 0 else None

    def renamed(self):
        """True when the name no longer points at this segment (unlinked or re-created)."""
        try:
            return os.stat(SHM_DIR + self.name).st_ino != self.inode
        except FileNotFoundError:
            return True

    cpdef close(self):
        """Unmap and drop any role this handle holds; the segment itself stays."""
        if self.fd >= 0:
            if self.holds_writer:
                ttq_ofd_unlock(self.fd, TTQ_LOCK_WRITER)
            if self.holds_reader:
                ttq_ofd_unlock(self.fd, TTQ_LOCK_READER)
        self.holds_writer = self.holds_reader = False
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL
            self.header = NULL
        if self._shm is not None:
            try:
                self._shm.close_fd()
            except Exception:
                pass
            self._shm = None
        self.fd = -1

    def unlink(self):
        return unlink(self.name)


cdef Py_ssize_t get_record_buffer(object records, Py_buffer *view, uint32_t record_size,
                                  bint writable) except -1:
    cdef int flags = PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
    PyObject_GetBuffer(records, view, flags)
    if view.len % record_size != 0 or (view.ndim >= 1 and view.itemsize not in (1, record_size)):
        itemsize = view.itemsize
        PyBuffer_Release(view)
        raise ValueError(f"buffer of {view.len} bytes (itemsize {itemsize}) is not whole "
                         f"records of {record_size} bytes; use the record dtype")
    return view.len // record_size


cdef int64_t timeout_to_ns(object timeout) except? -2:
    """None waits forever (-1); otherwise seconds, not negative."""
    if timeout is None:
        return -1
    if not (timeout >= 0):
        raise ValueError(f"timeout {timeout!r} must be None or seconds >= 0")
    if timeout > 9e9:           # ~285 years, and inf: the same as forever
        return -1
    return <int64_t>(timeout * 1e9)


cdef RingSegment open_ring(str name, uint32_t ring_kind, object record_type, object capacity,
                           object record_size, bint create, int mode, object group,
                           uint64_t default_capacity):
    if not create:
        return RingSegment.attach(name, ring_kind, record_type, record_size, capacity)
    if capacity is None:
        try:
            return RingSegment.attach(name, ring_kind, record_type, record_size)
        except RingNotFoundError:
            capacity = default_capacity
    return RingSegment.create_or_attach(name, ring_kind, record_type, record_size, capacity,
                                        mode, group)


cdef uint64_t recover_write_position(ring_view *r) noexcept nogil:
    cdef uint64_t pos = ttq_load_acquire_u64(&r.header.write_position)
    cdef uint64_t limit = pos + r.capacity
    while pos < limit:
        if ttq_load_acquire_u64(<uint64_t *>(r.slots + (pos & r.mask) * r.slot_size)) != ttq_stamp_done(pos):
            break
        pos += 1
    ttq_store_release_u64(&r.header.write_position, pos)
    wake_readers(r.header, True)
    return pos
