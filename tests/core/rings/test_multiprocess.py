"""Rings across processes: 10M-record stress for both kinds, and a writer killed mid-stream."""
import json
import os
import signal
import subprocess

import numpy as np
import pytest

from ttquant.core.records import MARKET_EVENT_DTYPE, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter, SpscReader, SpscWriter

from ttq_testing import TESTS_DIR, wait_for

WORKER = os.path.join(TESTS_DIR, "core", "rings", "ring_worker.py")
STRESS_RECORDS = int(os.environ.get("TTQ_STRESS_RECORDS", 10_000_000))


def _start(children, *args):
    proc = children.start(WORKER, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode().strip()
    if line != "ready":
        proc.wait(timeout=10)
        pytest.fail(f"worker {args} did not start: {line!r} {proc.stderr.read().decode()[-2000:]}")
    return proc


def _result(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker {proc.args[2:]} still running after {timeout}s")
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.stress
def test_broadcast_one_writer_three_readers_ten_million_records(ring, children):
    """Every reader sees records whole and in order; its loss counter equals exactly the
    positions it skipped; a deliberately slow reader is lapped and still adds up."""
    name = ring("ticks")
    BroadcastWriter(name, RecordType.MARKET_EVENT, 1 << 14).close()     # create, then hand over
    n = STRESS_RECORDS
    readers = [
        _start(children, "bcast-reader", name, n, "--wait", "hybrid"),
        _start(children, "bcast-reader", name, n, "--wait", "hybrid", "--batch", "1024"),
        _start(children, "bcast-reader", name, n, "--wait", "sleep", "--batch", "256", "--slow", "0.002"),
    ]
    writer = _start(children, "bcast-writer", name, n, "--rate", 2_500_000)
    sent = _result(writer, timeout=600)
    assert sent["sent"] == n and sent["position"] == n
    results = [_result(r, timeout=600) for r in readers]
    for res in results:
        assert res["torn"] == 0, res
        assert res["out_of_order"] == 0, res
        assert res["accounting_errors"] == 0, res
        assert res["position"] == n, res
        assert res["seen"] + res["lost"] == n, res
        assert res["gaps"] == res["lost"], res
    slow = results[2]
    assert slow["laps"] > 0 and slow["lost"] > 0, slow
    assert sum(r["seen"] for r in results[:2]) > n      # the fast readers kept up for most of it


@pytest.mark.stress
def test_spsc_ten_million_orders_none_lost_none_duplicated(ring, children):
    name = ring("orders", "stress")
    SpscWriter(name, RecordType.ORDER, 4096).close()
    n = STRESS_RECORDS
    reader = _start(children, "spsc-reader", name, n, "--pause", "0.3")
    writer = _start(children, "spsc-writer", name, n)
    got = _result(reader, timeout=600)
    sent = _result(writer, timeout=60)
    assert sent["sent"] == n
    assert got == {"seen": n, "torn": 0, "out_of_order": 0, "extra": False}
    # the paused reader made the ring fill: the writer was refused, and nothing was overwritten
    assert sent["refused_calls"] > 0 and sent["rejected_full"] >= sent["refused_calls"]


def test_writer_killed_mid_stream_then_restarted(ring, children):
    """SIGKILL the writer: readers see it dead and its heartbeat go stale; a restarted
    writer has the next epoch and readers carry on from it, losing and repeating nothing."""
    name = ring("ticks")
    BroadcastWriter(name, RecordType.MARKET_EVENT, 1 << 16).close()
    reader = BroadcastReader(name, start=0, wait="hybrid")
    buf = np.zeros(4096, MARKET_EVENT_DTYPE)
    got = []

    def drain():
        n = reader.poll_into(buf)
        got.append(buf[:n].copy())
        return n

    first = _start(children, "crash-writer", name)
    wait_for(lambda: reader.lag > 2000, what="the first writer to publish")
    status = reader.writer_status()
    first_epoch = status["writer_epoch"]
    assert status["writer_alive"] and status["writer_pid"] == first.pid
    assert status["heartbeat_age_ns"] < 1e9
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    while drain():
        pass
    stale = wait_for(lambda: (lambda s: s if s["heartbeat_age_ns"] > 0.3e9 else None)(reader.writer_status()),
                     what="the heartbeat to go stale")
    assert not stale["writer_alive"]
    killed_at = reader.position

    second = _start(children, "crash-writer", name)
    status = reader.writer_status()
    assert status["epoch_changed"] and status["writer_epoch"] == first_epoch + 1
    assert status["writer_alive"] and status["writer_pid"] == second.pid
    wait_for(lambda: drain() and reader.position > killed_at + 2000, what="records from the new writer")
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=10)
    while drain():
        pass

    records = np.concatenate(got)
    assert reader.lost == 0
    assert list(records["seq"]) == list(range(len(records)))       # no gap, no repeat
    epochs = records["venue_id"]
    assert set(epochs[:killed_at]) == {first_epoch}
    assert set(epochs[killed_at:]) == {first_epoch + 1}
    reader.close()


def test_spsc_writer_killed_loses_nothing_already_published(ring, children):
    name = ring("orders", "s1")
    SpscWriter(name, RecordType.ORDER, 1 << 16).close()
    reader = SpscReader(name)
    writer = _start(children, "spsc-writer", name, 50_000)
    wait_for(lambda: reader.available > 1000, what="orders")
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    published = reader.available
    seqs = []
    while (o := reader.poll()) is not None:
        seqs.append(o.client_order_id)
    assert seqs == list(range(published))
    with SpscWriter(name, RecordType.ORDER) as restarted:
        assert restarted.position == published
    reader.close()
