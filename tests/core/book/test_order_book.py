"""OrderBook against a dict model: every level, the best, the top N, crossing."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttquant.core.book.order_book import ASK, BID, OrderBook


def model_top(levels, side, depth):
    prices = sorted(levels, reverse=(side == BID))[:depth]
    return [(p, levels[p]) for p in prices]


def test_set_replace_remove_and_best():
    book = OrderBook(7)
    assert book.best(BID) is None and book.best(ASK) is None and not book.crossed
    assert book.set(BID, 100, 5) == 1
    assert book.set(BID, 101, 2) == 1
    assert book.set(BID, 101, 2) == 0           # same quantity: no change
    assert book.set(ASK, 103, 1) == 1
    assert book.best(BID) == (101, 2) and book.best(ASK) == (103, 1)
    assert book.set(BID, 101, 0) == 2
    assert book.set(BID, 99, 0) == 0            # absent level
    assert book.best(BID) == (100, 5)
    assert book.depth == (1, 1)
    book.set(BID, 103, 1)
    assert book.crossed
    with pytest.raises(ValueError):
        book.set(ASK, 1, -1)


def test_load_replaces_everything():
    book = OrderBook()
    book.set(BID, 1, 1)
    book.load([[100, 1], [99, 2], [98, 0]], [[101, 3]], last_update_id=42)
    assert book.last_update_id == 42
    assert book.levels(BID).tolist() == [[100, 1], [99, 2]]      # qty 0 in a snapshot: no level
    assert book.levels(ASK).tolist() == [[101, 3]]


ops = st.lists(st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 400), st.integers(0, 3)),
               max_size=1500)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(1, 30))
def test_random_updates_match_a_dict_model(updates, depth):
    book = OrderBook()
    model = {BID: {}, ASK: {}}
    for side, price, qty in updates:
        before = model[side].get(price)
        change = book.set(side, price, qty)
        if qty == 0:
            expected = 2 if before is not None else 0
            model[side].pop(price, None)
        else:
            expected = 0 if before == qty else 1
            model[side][price] = qty
        assert change == expected
    bids, asks = book.top(depth)
    assert [tuple(x) for x in bids.tolist()] == model_top(model[BID], BID, depth)
    assert [tuple(x) for x in asks.tolist()] == model_top(model[ASK], ASK, depth)
    assert book.depth == (len(model[BID]), len(model[ASK]))
    assert book.crossed == bool(model[BID] and model[ASK] and max(model[BID]) >= min(model[ASK]))


def test_grows_past_initial_capacity():
    book = OrderBook()
    for p in range(1, 5001):
        book.set(BID, p, p)
        book.set(ASK, 10_000 + p, p)
    assert book.depth == (5000, 5000)
    bids, asks = book.top(3)
    assert bids.tolist() == [[5000, 5000], [4999, 4999], [4998, 4998]]
    assert asks.tolist() == [[10_001, 1], [10_002, 2], [10_003, 3]]
    assert np.all(np.diff(book.levels(BID)[:, 0]) < 0)


@pytest.mark.parametrize("seed", range(8))
def test_levels_added_and_removed_at_both_ends_and_inside_match_a_dict_model(seed):
    """Runs of inserts below the deepest level and above the best, then removals anywhere:
    each side moves its shorter part, recentres and grows; the book stays the model's."""
    import random
    rnd = random.Random(seed)
    book = OrderBook()
    model = {BID: {}, ASK: {}}

    def check():
        for side in (BID, ASK):
            want = sorted(model[side].items(), reverse=(side == BID))
            assert [tuple(x) for x in book.levels(side).tolist()] == want

    def put(side, price, qty):
        book.set(side, price, qty)
        if qty:
            model[side][price] = qty
        else:
            model[side].pop(price, None)

    for _ in range(30):
        side = rnd.choice((BID, ASK))
        prices = list(model[side]) or [50_000]
        low, high = min(prices), max(prices)
        kind = rnd.choice(("deeper", "better", "inside", "remove"))
        for _ in range(rnd.randint(1, 400)):
            if kind == "deeper" or kind == "better":
                away = (kind == "deeper") == (side == BID)      # bids: deeper is lower
                low, high = (low - rnd.randint(1, 3), high) if away else (low, high + rnd.randint(1, 3))
                put(side, low if away else high, rnd.randint(1, 9))
            elif kind == "inside":
                put(side, rnd.randint(low, high), rnd.randint(0, 9))
            elif model[side]:
                put(side, rnd.choice(list(model[side])), 0)
        check()
    book.clear()
    assert book.depth == (0, 0)
    book.set(BID, 7, 1)
    assert book.levels(BID).tolist() == [[7, 1]]
