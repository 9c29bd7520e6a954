"""The order journal: what is written is read back exactly after a reopen, a torn last entry
(a crash while writing) is cut off and said, and a journal of another venue is refused."""
import os

import pytest

from ttquant.core.gateway.order_journal import CANCEL, MARK, ORDER, REJECT, REPORT, JournalError, OrderJournal
from ttquant.core.records import ExecReport, Order, OrderAction, OrderStatus, Side


def entries(path, **kw):
    j = OrderJournal(str(path), "binance", **kw)
    try:
        return list(j.entries()), j.torn_bytes
    finally:
        j.close()


@pytest.mark.parametrize("policy", ["every", "interval", "never"])
def test_entries_read_back_after_reopen(tmp_path, policy):
    path = tmp_path / "orders.journal"
    j = OrderJournal(str(path), "binance", fsync=policy)
    orders = [Order(client_order_id=i, strategy_id=2, instrument_id=1, action=OrderAction.NEW, side=Side.BUY,
                    price=100 + i, qty=5, ts_created=i) for i in range(1, 4)]
    j.mark(123)
    for o in orders:
        j.order(o, o.price)
    j.reject(Order(client_order_id=9, strategy_id=2), 3001)
    j.cancel(Order(client_order_id=10, target_order_id=1, strategy_id=2, action=OrderAction.CANCEL))
    j.report(ExecReport(client_order_id=1, strategy_id=2, status=OrderStatus.FILLED, cum_qty=5, last_qty=5))
    j.sync_if_due()
    j.close()
    got, torn = entries(path)
    assert torn == 0
    assert [k for k, _ in got] == [MARK, ORDER, ORDER, ORDER, REJECT, CANCEL, REPORT]
    assert got[0][1] == 123
    assert [(o, p) for _, (o, p) in got[1:4]] == [(o, o.price) for o in orders]
    assert got[4][1][1] == 3001 and got[5][1].target_order_id == 1 and got[6][1].cum_qty == 5


def test_a_torn_last_entry_is_cut_off_and_appending_goes_on(tmp_path):
    path = tmp_path / "orders.journal"
    j = OrderJournal(str(path), "binance")
    j.order(Order(client_order_id=1, strategy_id=2), 0)
    j.order(Order(client_order_id=2, strategy_id=2), 0)
    j.close()
    whole = os.path.getsize(path)
    with open(path, "r+b") as f:            # the second entry half written
        f.truncate(whole - 20)
    got, torn = entries(path)
    assert [o.client_order_id for _, (o, _) in got] == [1] and torn > 0
    j = OrderJournal(str(path), "binance")
    j.order(Order(client_order_id=3, strategy_id=2), 0)
    j.close()
    got, torn = entries(path)
    assert [o.client_order_id for _, (o, _) in got] == [1, 3] and torn == 0
    with open(path, "r+b") as f:            # a flipped byte inside the last entry
        f.seek(os.path.getsize(path) - 5)
        f.write(b"\xff")
    got, torn = entries(path)
    assert [o.client_order_id for _, (o, _) in got] == [1]


def test_a_journal_of_another_venue_or_no_journal_is_refused(tmp_path):
    path = tmp_path / "orders.journal"
    OrderJournal(str(path), "binance").close()
    with pytest.raises(JournalError, match="binance"):
        OrderJournal(str(path), "okx")
    other = tmp_path / "other"
    other.write_bytes(b"x" * 100)
    with pytest.raises(JournalError, match="not an order journal"):
        OrderJournal(str(other), "binance")
    with pytest.raises(ValueError, match="fsync"):
        OrderJournal(str(tmp_path / "x"), "binance", fsync="sometimes")
