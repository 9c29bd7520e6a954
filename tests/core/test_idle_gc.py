"""IdleCollector: what start-up made is frozen, CPython's automatic collection is off, the young
generation is collected when the loop has been idle (and within young_every_s even when busy),
older generations at their turn; garbage cycles made while trading are still freed."""
import gc
import weakref

from ttquant.core.idle_gc import IdleCollector


class Node:
    pass


def test_collects_when_idle_and_no_more_often_than_it_should():
    c = IdleCollector(0.0, idle_after_s=0.001, min_interval_s=0.01, young_every_s=0.1, full_every_s=60.0)
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        assert c.poll(0.005, busy=False) == -1            # idle, but the last collection was 5 ms ago
        assert c.poll(0.0110, busy=True) == -1            # busy: no collection on the trading path
        assert c.poll(0.0115, busy=False) == -1           # idle for only 0.5 ms
        assert c.poll(0.0121, busy=False) == 0            # idle 1.1 ms, 12 ms since: the young generation
        assert c.poll(0.0130, busy=False) == -1
        t = 0.0121
        while t < 0.3:                                    # busy all along: still collected every 0.1 s
            t += 0.001
            c.poll(t, busy=True)
        assert c.collections == [3, 0, 0]            # the idle one, then at 0.11 s and 0.21 s
    finally:
        c.close()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_older_generations_take_their_turn():
    c = IdleCollector(0.0, idle_after_s=0.0, min_interval_s=0.0, young_every_s=1.0, full_every_s=5.0)
    try:
        gens = [c.poll(0.01 * k, busy=False) for k in range(1, 21)]
        assert gens.count(1) == 2 and gens[9] == 1 and gens[19] == 1      # every tenth: the middle one
        assert c.poll(5.0, busy=False) == 2                               # full_every_s: everything
    finally:
        c.close()


def test_cycles_made_while_trading_are_freed():
    c = IdleCollector(0.0, idle_after_s=0.0, min_interval_s=0.0)
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None                          # automatic collection is off: still alive
        assert c.poll(1.0, busy=False) == 0
        assert gone() is None
    finally:
        c.close()
