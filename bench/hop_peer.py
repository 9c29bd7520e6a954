"""The far side of each ping-pong: echo every message back, same payload, same loop shape.

Each function runs in its own process (multiprocessing, spawn) and returns after `n` echoes.
The Python-driven loops are deliberately alike so the transports, not the loops, differ.
"""
import os

PAYLOAD = 120       # bytes: one MarketEvent
# Throughput producers first answer LINE_ROUND_TRIPS pings on consumer[LINE_WORD] (ring_kernels.line_ping).
LINE_WORD = 8
LINE_ROUND_TRIPS = 5000


def _pin(cpu):
    # always set: a spawned child inherits the parent's affinity (CPU 0 while benchmarking)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def ring_echo(ping_name, pong_name, n, wait, cpu, ready):
    """TTQuant broadcast rings, Python loop: spin on poll() or wait() by the policy."""
    _pin(cpu)
    from ttquant.core.records import RecordType
    from ttquant.core.rings import BroadcastReader, BroadcastWriter

    r = BroadcastReader(ping_name, wait=wait)
    w = BroadcastWriter(pong_name, RecordType.MARKET_EVENT, create=False)
    ready.set()
    push, poll, wait_for = w.push, r.poll, r.wait
    if wait == "spin":
        for _ in range(n):
            ev = poll()
            while ev is None:
                ev = poll()
            push(ev)
    else:
        for _ in range(n):
            push(wait_for())
    r.close()
    w.close()


def ring_echo_cython(ping_name, pong_name, n, cpu, ready, kernels_dir):
    """TTQuant broadcast rings, Cython loop (ring_kernels.echo_broadcast)."""
    _pin(cpu)
    import sys
    sys.path.insert(0, kernels_dir)
    from ttquant.core.records import RecordType
    from ttquant.core.rings import BroadcastReader, BroadcastWriter

    import ring_kernels

    r = BroadcastReader(ping_name, wait="spin")
    w = BroadcastWriter(pong_name, RecordType.MARKET_EVENT, create=False)
    ready.set()
    ring_kernels.echo_broadcast(r, w, n)
    r.close()
    w.close()


def zmq_echo(endpoint, n, cpu, ready):
    """pyzmq PAIR over ipc:// (the original design's transport)."""
    _pin(cpu)
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(endpoint)
    ready.set()
    recv, send = sock.recv, sock.send
    for _ in range(n):
        send(recv())
    sock.close(linger=0)
    ctx.term()


def pipe_echo(conn, n, cpu, ready):
    """multiprocessing.Pipe (a socketpair with length-prefixed frames)."""
    _pin(cpu)
    ready.set()
    recv, send = conn.recv_bytes, conn.send_bytes
    for _ in range(n):
        send(recv())
    conn.close()


def py_producer(name, kind, n, batch, ready, go, kernels_dir, consumer, window, cpu):
    """Python -> Python throughput: publish n records with push()/offer() one by one (batch 1)
    or push_many() of `batch`; a broadcast producer stays within window of consumer[0]."""
    _pin(cpu)
    import sys
    sys.path.insert(0, kernels_dir)
    import numpy as np

    from ttquant.core.records import MARKET_EVENT_DTYPE, ORDER_DTYPE, MarketEvent, Order, RecordType
    from ttquant.core.rings import BroadcastWriter, SpscWriter

    import ring_kernels

    seen = np.frombuffer(consumer, dtype=np.int64)
    if kind == "broadcast":
        w = BroadcastWriter(name, RecordType.MARKET_EVENT, create=False)
        rec, push, records = MarketEvent(), w.push, np.zeros(batch, MARKET_EVENT_DTYPE)
    else:
        w = SpscWriter(name, RecordType.ORDER, create=False)
        rec, offer, records = Order(), w.offer, np.zeros(batch, ORDER_DTYPE)
    ready.set()
    go.wait()
    ring_kernels.line_echo(seen[LINE_WORD:], LINE_ROUND_TRIPS)
    sent = 0
    if batch > 1:
        push_many = w.push_many
        while sent < n:
            if kind == "broadcast" and sent - seen[0] >= window:
                continue
            sent += push_many(records[:min(batch, n - sent)])
    elif kind == "broadcast":
        while sent < n:
            if sent - seen[0] >= window:
                continue
            k = min(256, n - sent)
            for _ in range(k):
                push(rec)
            sent += k
    else:
        while sent < n:
            if offer(rec):
                sent += 1
    w.close()


def cy_producer(name, kind, n, batch, ready, go, kernels_dir, consumer, window, idle_ns, cpu):
    """Cython -> Cython throughput: the producer side (ring_kernels); idle_ns off the ring
    whenever it must wait for room."""
    _pin(cpu)
    import sys
    sys.path.insert(0, kernels_dir)
    import numpy as np

    from ttquant.core.records import RecordType
    from ttquant.core.rings import BroadcastWriter, SpscWriter

    import ring_kernels

    seen = np.frombuffer(consumer, dtype=np.int64)
    if kind == "broadcast":
        w = BroadcastWriter(name, RecordType.MARKET_EVENT, create=False)
        ready.set()
        go.wait()
        ring_kernels.line_echo(seen[LINE_WORD:], LINE_ROUND_TRIPS)
        ring_kernels.pump_broadcast_paced(w, n, seen, window, batch, idle_ns)
    else:
        w = SpscWriter(name, RecordType.ORDER, create=False)
        ready.set()
        go.wait()
        ring_kernels.line_echo(seen[LINE_WORD:], LINE_ROUND_TRIPS)
        ring_kernels.pump_spsc(w, n, batch, idle_ns)
    w.close()


def zmq_producer(endpoint, n, ready, go, cpu):
    """pyzmq PUSH over ipc://, one message per record: the throughput peer."""
    _pin(cpu)
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(endpoint)
    payload = bytes(PAYLOAD)
    ready.set()
    go.wait()
    send = sock.send
    for _ in range(n):
        send(payload)
    sock.close(linger=-1)
    ctx.term()
