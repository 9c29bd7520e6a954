"""Waiting readers: spin, hybrid (spin then futex) and sleep, woken across processes."""
import os
import threading
import time

import numpy as np
import pytest

from ttquant.core.records import MARKET_EVENT_DTYPE, ORDER_DTYPE, MarketEvent, Order, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter, SpscReader, SpscWriter

from ttq_testing import wait_for

ME = RecordType.MARKET_EVENT


def test_bad_wait_policy_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        with pytest.raises(ValueError, match="wait mode 'busy' must be one of"):
            BroadcastReader(name, wait="busy")
        with pytest.raises(ValueError, match="spin_polls -1"):
            BroadcastReader(name, spin_polls=-1)
        with pytest.raises(ValueError, match="max_sleep 0"):
            BroadcastReader(name, max_sleep=0)
        with BroadcastReader(name) as r:
            with pytest.raises(ValueError, match="timeout -1"):
                r.wait(timeout=-1)


@pytest.mark.parametrize("mode", ["spin", "hybrid", "sleep"])
def test_wait_times_out_with_none(ring, mode):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16), BroadcastReader(name, wait=mode, spin_polls=100) as r:
        t0 = time.monotonic()
        assert r.wait(timeout=0.05) is None
        assert time.monotonic() - t0 >= 0.05
        assert r.wait_into(np.zeros(4, MARKET_EVENT_DTYPE), timeout=0.0) == 0


@pytest.mark.parametrize("mode", ["spin", "hybrid", "sleep"])
def test_wait_returns_what_is_already_there(ring, mode):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name, wait=mode) as r:
        w.push(MarketEvent(seq=4))
        assert r.wait(timeout=1).seq == 4


def _asleep(reader):
    """A reader announced it is about to sleep (bit 0 of the futex word)."""
    return reader.segment.header_fields()["sleep_announced"]


def test_sleeping_reader_is_woken_by_the_writer_from_another_thread(ring):
    """The reader really sleeps on the futex and one push wakes it."""
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name, wait="sleep", max_sleep=30) as r:
        got = []
        t = threading.Thread(target=lambda: got.append(r.wait(timeout=30)))
        t.start()
        wait_for(lambda: _asleep(r), what="the reader to go to sleep")
        wakeups = w.segment.header_fields()["wakeups"]
        t0 = time.monotonic()
        w.push(MarketEvent(seq=11))
        t.join(10)
        assert not t.is_alive() and got[0].seq == 11
        assert time.monotonic() - t0 < 10    # woken, not timed out after max_sleep=30
        assert w.segment.header_fields()["wakeups"] == wakeups + 1
        assert not _asleep(r)


def test_writer_does_not_wake_when_nobody_sleeps(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name, wait="spin"):
        for i in range(100):
            w.push(MarketEvent(seq=i))
        assert w.segment.header_fields()["wakeups"] == 0


def test_spsc_sleeping_reader_is_woken(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, RecordType.ORDER, 8) as w, SpscReader(name, wait="hybrid", spin_polls=10, max_sleep=30) as r:
        got = []
        t = threading.Thread(target=lambda: got.append(r.wait(timeout=30)))
        t.start()
        wait_for(lambda: _asleep(r), what="the reader to go to sleep")
        w.push(Order(client_order_id=5))
        t.join(10)
        assert not t.is_alive() and got[0].client_order_id == 5


def test_wait_into_waits_for_one_then_drains(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, RecordType.ORDER, 8) as w, SpscReader(name, wait="sleep") as r:
        def later():
            time.sleep(0.05)
            for i in range(3):
                w.push(Order(client_order_id=i))
        t = threading.Thread(target=later)
        t.start()
        out = np.zeros(8, ORDER_DTYPE)
        n = r.wait_into(out, timeout=10)
        t.join()
        n += r.poll_into(out[n:])
        assert n == 3 and list(out["client_order_id"][:3]) == [0, 1, 2]


def test_cross_process_wake_up(ring, children, tmp_path):
    """A writer in another process wakes a reader asleep on the shared (not private) futex."""
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w:
        w.close()                                   # the child takes the writer role
        r = BroadcastReader(name, wait="sleep", max_sleep=30)
        script = tmp_path / "writer.py"
        script.write_text(
            "import sys, time\n"
            "from ttquant.core.rings import BroadcastWriter\n"
            "from ttquant.core.records import MarketEvent, RecordType\n"
            f"w = BroadcastWriter({name!r}, RecordType.MARKET_EVENT, 16)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "w.push(MarketEvent(seq=42))\n"
            "time.sleep(5)\n")
        import subprocess
        child = children.start(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"     # attached, recovery done
        got = []
        t = threading.Thread(target=lambda: got.append(r.wait(timeout=30)))
        t.start()
        wait_for(lambda: _asleep(r), what="the reader to go to sleep")
        child.stdin.write(b"go\n")
        child.stdin.flush()
        t.join(20)
        assert not t.is_alive() and got[0].seq == 42
        assert r.segment.header_fields()["wakeups"] == 1
        r.close()


def test_keyboard_interrupt_reaches_a_waiting_reader(ring):
    """A reader asleep in wait() still sees signals (SIGINT -> KeyboardInterrupt)."""
    import signal
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16), BroadcastReader(name, wait="hybrid", spin_polls=1000, max_sleep=0.02) as r:
        timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            r.wait(timeout=30)
        timer.join()


def test_a_reader_killed_asleep_costs_one_wasted_wake_not_one_per_push(ring, children, tmp_path):
    """SIGKILL a reader inside its futex sleep: the next push clears its announcement with
    a single wake, and later pushes make no syscall at all."""
    import signal
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w:
        script = tmp_path / "sleeper.py"
        script.write_text(
            "from ttquant.core.rings import BroadcastReader\n"
            f"r = BroadcastReader({name!r}, wait='sleep', max_sleep=60)\n"
            "print('ready', flush=True)\n"
            "r.wait()\n")
        import subprocess
        child = children.start(script, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        wait_for(lambda: w.segment.header_fields()["sleep_announced"], what="the child to sleep")
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert w.segment.header_fields()["sleep_announced"]     # the dead reader's bit is left
        for i in range(1000):
            w.push(MarketEvent(seq=i))
        fields = w.segment.header_fields()
        assert fields["wakeups"] == 1 and not fields["sleep_announced"]


def test_close_while_another_thread_waits_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w:
        r = BroadcastReader(name, wait="sleep", max_sleep=30)
        t = threading.Thread(target=lambda: r.wait(timeout=30))
        t.start()
        wait_for(lambda: _asleep(r), what="the reader to go to sleep")
        with pytest.raises(RuntimeError, match="close\\(\\) while another thread waits"):
            r.close()
        w.push(MarketEvent(seq=1))
        t.join(10)
        r.close()


def test_zero_timeout_looks_once(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name, wait="spin") as r:
        assert r.wait(timeout=0) is None
        w.push(MarketEvent(seq=3))
        assert r.wait(timeout=0).seq == 3
        w.push(MarketEvent(seq=4))
        assert r.wait(timeout=float("inf")).seq == 4      # inf means forever, not an overflow
