"""Child-process roles for the multi-process ring tests; run as a script.

Every record is derived from its sequence number: each 8-byte word is a hash of
(seq, word index), the seq word is the sequence itself and the last word is the XOR of the
others. A reader can therefore prove, vectorised, that each record it got is whole (not torn),
in order, and the one the writer wrote for that position.

  ring_worker.py bcast-writer NAME N [--rate R]       publish N events (R records/s, 0 = flat out)
  ring_worker.py bcast-reader NAME N [--slow S] [--wait MODE] [--batch B]
  ring_worker.py spsc-writer NAME N
  ring_worker.py spsc-reader NAME N [--pause S]
  ring_worker.py crash-writer NAME                    publish forever, 20k/s, heartbeating
Each prints "ready" when attached, then one JSON line of results.
"""
import argparse
import json
import sys
import time

import numpy as np

from ttquant.core.records import MARKET_EVENT_DTYPE, ORDER_DTYPE, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter, SpscReader, SpscWriter

EVENT_WORDS, EVENT_SEQ_WORD = 15, 3     # MarketEvent.seq at offset 24
ORDER_WORDS, ORDER_SEQ_WORD = 7, 1      # Order.client_order_id at offset 8


def _mix(x):
    # splitmix64 finaliser; numpy uint64 arithmetic wraps like C
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def expected_words(seq, n_words, seq_word):
    seq = seq.astype(np.uint64)
    words = _mix(seq[:, None] * np.uint64(64) + np.arange(n_words, dtype=np.uint64)[None, :])
    words[:, seq_word] = seq
    words[:, -1] = np.bitwise_xor.reduce(words[:, :-1], axis=1)
    return words


def fill(records, start, n_words, seq_word):
    seq = np.arange(start, start + len(records), dtype=np.uint64)
    records.view(np.uint64).reshape(len(records), n_words)[:] = expected_words(seq, n_words, seq_word)


def check(records, n_words, seq_word):
    """(sequence numbers, count of records whose bytes are not the writer's)."""
    words = records.view(np.uint64).reshape(len(records), n_words)
    seq = words[:, seq_word].copy()
    bad = int((words != expected_words(seq, n_words, seq_word)).any(axis=1).sum())
    return seq, bad


def say(obj):
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


def bcast_writer(a):
    w = BroadcastWriter(a.name, RecordType.MARKET_EVENT, create=False)
    say("ready")
    batch = np.zeros(1024, MARKET_EVENT_DTYPE)
    t0 = time.perf_counter()
    sent = 0
    while sent < a.n:
        k = min(len(batch), a.n - sent)
        fill(batch[:k], sent, EVENT_WORDS, EVENT_SEQ_WORD)
        w.push_many(batch[:k])
        sent += k
        if a.rate:
            ahead = sent / a.rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    say({"sent": sent, "position": w.position, "seconds": time.perf_counter() - t0})
    w.close()


def bcast_reader(a):
    r = BroadcastReader(a.name, start=0, wait=a.wait)
    say("ready")
    buf = np.zeros(a.batch, MARKET_EVENT_DTYPE)
    seen = torn = out_of_order = gaps = accounting_errors = jumped_ahead = 0
    expected_next = 0
    idle_since = time.monotonic()
    while r.position < a.n:
        n = r.wait_into(buf, timeout=1.0)
        if n == 0:
            if time.monotonic() - idle_since > 60:
                break
            continue
        idle_since = time.monotonic()
        seq, bad = check(buf[:n], EVENT_WORDS, EVENT_SEQ_WORD)
        torn += bad
        steps = np.diff(seq.astype(np.int64), prepend=np.int64(expected_next - 1))
        out_of_order += int((steps < 1).sum())
        gaps += int((steps - 1).sum())      # positions skipped before and inside this batch
        expected_next = int(seq[-1]) + 1
        seen += n
        # Exact accounting after every call: the cursor is where the reader has read or lost
        # up to, and the loss counter is every skipped position, including a jump made after
        # the last record returned (its records come in the next call).
        if seen + r.lost != r.position or gaps + (r.position - expected_next) != r.lost:
            accounting_errors += 1
        jumped_ahead += r.position != expected_next
        if a.slow:
            time.sleep(a.slow)
    say({"seen": seen, "lost": r.lost, "laps": r.laps, "gaps": gaps, "torn": torn,
         "out_of_order": out_of_order, "accounting_errors": accounting_errors,
         "jumped_ahead": jumped_ahead, "position": r.position})
    r.close()


def spsc_writer(a):
    w = SpscWriter(a.name, RecordType.ORDER, create=False, capacity=None)
    say("ready")
    batch = np.zeros(1024, ORDER_DTYPE)
    sent = refused = 0
    pending = 0
    while sent < a.n:
        if pending == 0:
            pending = min(len(batch), a.n - sent)
            fill(batch[:pending], sent, ORDER_WORDS, ORDER_SEQ_WORD)
            offset = 0
        pushed = w.push_many(batch[offset:offset + pending])
        if pushed < pending:
            refused += 1
            time.sleep(0)
        sent += pushed
        offset += pushed
        pending -= pushed
    say({"sent": sent, "refused_calls": refused, "rejected_full": w.rejected_full})
    w.close()


def spsc_reader(a):
    r = SpscReader(a.name, wait="hybrid")
    say("ready")
    if a.pause:
        time.sleep(a.pause)     # let the writer fill the ring: it must refuse, not overwrite
    buf = np.zeros(2048, ORDER_DTYPE)
    seen = torn = out_of_order = 0
    expected_next = 0
    while seen < a.n:
        n = r.wait_into(buf, timeout=30)
        if n == 0:
            break
        seq, bad = check(buf[:n], ORDER_WORDS, ORDER_SEQ_WORD)
        torn += bad
        out_of_order += int((seq != np.arange(expected_next, expected_next + n, dtype=np.uint64)).sum())
        expected_next += n
        seen += n
    extra = r.poll() is not None
    say({"seen": seen, "torn": torn, "out_of_order": out_of_order, "extra": extra})
    r.close()


def crash_writer(a):
    w = BroadcastWriter(a.name, RecordType.MARKET_EVENT, create=False)
    epoch = w.epoch
    say("ready")
    rec = np.zeros(1, MARKET_EVENT_DTYPE)
    while True:
        fill(rec, w.position, EVENT_WORDS, EVENT_SEQ_WORD)
        rec["venue_id"] = epoch         # which writer incarnation wrote it
        w.push_many(rec)
        if w.position % 256 == 0:
            w.heartbeat()
        time.sleep(0.00005)


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("role")
    p.add_argument("name")
    p.add_argument("n", type=int, nargs="?", default=0)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--slow", type=float, default=0)
    p.add_argument("--wait", default="hybrid")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--pause", type=float, default=0)
    a = p.parse_args(argv)
    {"bcast-writer": bcast_writer, "bcast-reader": bcast_reader, "spsc-writer": spsc_writer,
     "spsc-reader": spsc_reader, "crash-writer": crash_writer}[a.role](a)


if __name__ == "__main__":
    main(sys.argv[1:])
