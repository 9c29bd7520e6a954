"""Ring segments: creation, naming, permissions, header validation and every error path."""
import os
import stat
import struct

import pytest

from ttquant.core.records import RecordType
from ttquant.core.rings import (
    HEADER_SIZE,
    KIND_BROADCAST,
    KIND_SPSC,
    LAYOUT_VERSION,
    BroadcastReader,
    BroadcastWriter,
    RingBusyError,
    RingLayoutError,
    RingNotFoundError,
    RingSegment,
    SpscReader,
    SpscWriter,
    list_segments,
    ring_name,
    unlink,
)

from ttq_testing import wait_for

ME = RecordType.MARKET_EVENT
SHM = "/dev/shm"


def _path(name):
    return SHM + name


def test_ring_name_format_and_validation():
    assert ring_name("binance", "ticks") == "/ttq.binance.ticks"
    assert ring_name("binance", "orders", "mm1") == "/ttq.binance.orders.mm1"
    for bad in [("Binance", "ticks"), ("binance", "ti.cks"), ("", "x"), ("a", "b", "c/d")]:
        with pytest.raises(ValueError, match="must match"):
            ring_name(*bad)


def test_attach_rejects_names_outside_the_namespace():
    with pytest.raises(ValueError, match="must look like /ttq"):
        RingSegment.attach("/other.ring")


def test_segment_is_created_0660_whatever_the_umask(ring):
    name = ring("ticks")
    old = os.umask(0o077)
    try:
        with BroadcastWriter(name, ME, 16):
            pass
    finally:
        os.umask(old)
    st = os.stat(_path(name))
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_size == HEADER_SIZE + 16 * 128


def test_group_is_configurable(ring):
    name = ring("ticks")
    gid = os.getgroups()[0] if os.getgroups() else os.getgid()
    with BroadcastWriter(name, ME, 16, group=gid):
        pass
    assert os.stat(_path(name)).st_gid == gid
    with pytest.raises(ValueError, match="group 'no-such-group-ttq' does not exist"):
        BroadcastWriter(ring("other"), ME, 16, group="no-such-group-ttq")
    assert not os.path.exists(_path(ring("other")))


@pytest.mark.parametrize("capacity", [0, 1, 3, 100, 2**31])
def test_capacity_must_be_a_power_of_two(ring, capacity):
    with pytest.raises(ValueError, match="power of two"):
        BroadcastWriter(ring("ticks"), ME, capacity)


def test_record_size_bounds(ring):
    with pytest.raises(ValueError, match="record size 0"):
        BroadcastWriter(ring("a"), 99, 16, record_size=0)
    with pytest.raises(ValueError, match="not a known record; give record_size"):
        BroadcastWriter(ring("a"), 99, 16)


def test_missing_ring_is_a_clear_error(ring):
    name = ring("ticks")
    with pytest.raises(RingNotFoundError, match=f"ring {name} does not exist"):
        BroadcastReader(name)
    with pytest.raises(RingNotFoundError):
        SpscReader(name)


def test_reattach_with_other_parameters_names_the_mismatch(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        pass
    with pytest.raises(RingLayoutError, match=rf"ring {name}: capacity 16, expected 32"):
        BroadcastWriter(name, ME, 32)
    with pytest.raises(RingLayoutError, match=rf"ring {name}: carries record type 1, expected 2"):
        BroadcastWriter(name, RecordType.ORDER, 16)
    with pytest.raises(RingLayoutError, match="is a broadcast ring, expected spsc"):
        SpscWriter(name, ME, 16)
    with pytest.raises(RingLayoutError, match="record size 120, expected 64"):
        BroadcastReader(name, record_size=64)


def _corrupt(name, offset, fmt, value):
    with open(_path(name), "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.mark.parametrize("offset,fmt,value,message", [
    (0, "<Q", 0x1122334455667788, r"not a TTQuant ring \(magic 0x1122334455667788"),
    (8, "<I", LAYOUT_VERSION + 1, f"layout version {LAYOUT_VERSION + 1}, this build reads version {LAYOUT_VERSION}"),
    (12, "<I", 7, "unknown ring kind 7"),
    (28, "<I", 12, "capacity 12 in the header is not a power of two"),
    (24, "<I", 192, "slot size 192 does not fit record size 120"),
    (32, "<Q", 999, "header says 999 bytes"),
])
def test_corrupt_header_fields_are_named(ring, offset, fmt, value, message):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        pass
    _corrupt(name, offset, fmt, value)
    with pytest.raises(RingLayoutError, match=message) as info:
        BroadcastReader(name)
    assert name in str(info.value)


def test_truncated_segment_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        pass
    os.truncate(_path(name), HEADER_SIZE + 100)
    with pytest.raises(RingLayoutError, match=rf"ring {name}: truncated segment, {HEADER_SIZE + 100} bytes"):
        BroadcastReader(name)


def test_segment_smaller_than_a_header_is_refused(ring, monkeypatch):
    from ttquant.core.rings import segment
    monkeypatch.setattr(segment, "INIT_WAIT_S", 0.05)
    name = ring("ticks")
    fd = os.open(_path(name), os.O_CREAT | os.O_RDWR, 0o660)
    os.write(fd, b"\x01" * 100)
    os.close(fd)
    with pytest.raises(RingLayoutError, match="truncated segment, 100 bytes is less than the 4096-byte header"):
        BroadcastReader(name)


def test_never_initialised_segment_is_refused(ring, monkeypatch):
    from ttquant.core.rings import segment
    monkeypatch.setattr(segment, "INIT_WAIT_S", 0.05)
    name = ring("ticks")
    fd = os.open(_path(name), os.O_CREAT | os.O_RDWR, 0o660)
    os.ftruncate(fd, HEADER_SIZE + 16 * 128)
    os.close(fd)
    with pytest.raises(RingLayoutError, match="never initialised"):
        BroadcastWriter(name, ME, 16)


def test_second_live_writer_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        with pytest.raises(RingBusyError, match=rf"ring {name} already has a live writer \(pid {os.getpid()}\)"):
            BroadcastWriter(name, ME, 16)
    with BroadcastWriter(name, ME, 16):     # the role is free again after close
        pass


def test_second_spsc_reader_is_refused(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, RecordType.ORDER, 8), SpscReader(name):
        with pytest.raises(RingBusyError, match="already has a live reader"):
            SpscReader(name)


def test_writer_epoch_bumps_on_every_attach(ring):
    name = ring("ticks")
    epochs = []
    for _ in range(3):
        with BroadcastWriter(name, ME, 16) as w:
            epochs.append(w.epoch)
    assert epochs == [1, 2, 3]


def test_read_only_attach_cannot_take_roles(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        seg = RingSegment.attach(name, read_only=True)
        try:
            assert seg.writer_alive()
            with pytest.raises(PermissionError, match="read-only"):
                seg.acquire_writer()
        finally:
            seg.close()


def test_liveness_follows_the_role_lock(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        reader = BroadcastReader(name)
        assert reader.writer_status()["writer_alive"]
    assert not reader.writer_status()["writer_alive"]
    reader.close()


def test_list_segments_and_unlink(ring):
    a, b = ring("ticks"), ring("exec")
    with BroadcastWriter(a, ME, 16), BroadcastWriter(b, RecordType.EXEC_REPORT, 16):
        names = list_segments()
        assert a in names and b in names
    assert unlink(a) is True
    assert unlink(a) is False
    assert a not in list_segments()


def test_unlinked_ring_stays_usable_by_those_who_mapped_it(ring):
    name = ring("ticks")
    from ttquant.core.records import MarketEvent
    with BroadcastWriter(name, ME, 16) as w:
        r = BroadcastReader(name)
        w.unlink()
        assert r.segment.renamed()
        w.push(MarketEvent(seq=5))
        assert r.poll().seq == 5
        r.close()


def test_closed_handles_refuse_to_work(ring):
    from ttquant.core.records import MarketEvent
    name = ring("ticks")
    w = BroadcastWriter(name, ME, 16)
    r = BroadcastReader(name)
    w.close()
    r.close()
    with pytest.raises(ValueError, match="closed"):
        w.push(MarketEvent())
    with pytest.raises(ValueError, match="closed"):
        r.poll()


def test_kind_constants():
    assert KIND_BROADCAST != KIND_SPSC


def test_a_known_record_type_keeps_its_size(ring):
    with pytest.raises(ValueError, match="record type 1 is 120 bytes, not 4000"):
        BroadcastWriter(ring("ticks"), ME, 16, record_size=4000)


def test_header_with_a_wrong_size_for_its_record_type_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        pass
    _corrupt(name, 20, "<I", 64)
    with pytest.raises(RingLayoutError, match="record type 1 is 120 bytes, the header says 64"):
        BroadcastReader(name)


def test_read_only_handles_cannot_heartbeat(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        seg = RingSegment.attach(name, read_only=True)
        with pytest.raises(PermissionError, match="read-only"):
            seg.heartbeat()
        seg.close()
        with pytest.raises(Exception, match="closed"):
            seg.writer_alive()


def test_a_garbage_collected_writer_frees_its_role(ring):
    import gc
    name = ring("ticks")
    w = BroadcastWriter(name, ME, 16)
    del w
    gc.collect()
    with BroadcastWriter(name, ME, 16) as w2:
        assert w2.epoch == 2


def test_concurrent_creators_all_get_the_same_ring(ring, children, tmp_path):
    """Processes racing to create one ring: one creates it whole, the rest attach to it;
    no half-made segment and no temporary name is ever left."""
    import subprocess
    name = ring("ticks")
    script = tmp_path / "creator.py"
    script.write_text(
        "import os, sys, time\n"
        "from ttquant.core.rings import RingSegment\n"
        "t = float(sys.argv[1])\n"
        "while time.time() < t: pass\n"
        f"seg = RingSegment.create_or_attach({name!r}, 1, 1, 120, 1024)\n"
        "print(seg.inode, seg.header_fields()['capacity'], flush=True)\n")
    start = __import__("time").time() + 1.0
    procs = [children.start(script, start, stdout=subprocess.PIPE) for _ in range(6)]
    outs = {p.communicate(timeout=30)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1 and outs.pop().endswith(b" 1024")
    assert [n for n in list_segments() if n.startswith(name)] == [name]


def test_a_forked_child_does_not_keep_the_writer_role_alive(ring, children, tmp_path):
    """The writer forks a long-lived child, then dies: the role is free at once."""
    import signal
    import subprocess
    name = ring("ticks")
    script = tmp_path / "forker.py"
    script.write_text(
        "import os, time\n"
        "from ttquant.core.rings import BroadcastWriter\n"
        f"w = BroadcastWriter({name!r}, 1, 16)\n"
        "if os.fork() == 0:\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    proc = children.start(script, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    r = BroadcastReader(name)
    assert r.writer_status()["writer_alive"]
    os.kill(proc.pid, signal.SIGKILL)       # the parent only; the forked child lives on
    proc.wait(timeout=10)
    # the child drops its inherited copy in its at-fork hook, on its first timeslice;
    # without that it would hold the role for its whole minute of sleep
    wait_for(lambda: not r.writer_status()["writer_alive"], timeout=5, what="the role to be free")
    r.close()
