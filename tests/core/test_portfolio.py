"""Portfolio: average-cost positions and PnL, exact against a Decimal model over random fills."""
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.portfolio import Portfolio, Position
from ttquant.core.records import ExecReport, Side

BUY, SELL = Side.BUY, Side.SELL


def _inst(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT,
          price_precision=2, size_precision=5, multiplier=1, quote="USDT"):
    return Instrument(instrument_id=instrument_id, venue=venue, symbol=symbol, market_type=market_type,
                      base="BTC", quote=quote, price_precision=price_precision,
                      size_precision=size_precision, tick_size=1, step_size=1, min_qty=1, max_qty=0,
                      min_price=1, max_price=0, min_notional=0, multiplier=multiplier)


class DecimalModel:
    """Average cost in real units (Decimal prices and quantities), written from the definition."""

    def __init__(self, inst, fee_precision):
        self.inst = inst
        self.fee_precision = fee_precision
        self.pnl_precision = max(inst.price_precision + inst.size_precision, fee_precision)
        self.quantum = Decimal(1).scaleb(-self.pnl_precision)
        self.qty = Decimal(0)
        self.cost = Decimal(0)
        self.realised = Decimal(0)
        self.fees = Decimal(0)
        self.cash = Decimal(0)          # what the fills paid and received, fees apart

    def fill(self, side, price_raw, qty_raw, fee_raw):
        inst = self.inst
        price = Decimal(price_raw).scaleb(-inst.price_precision)
        qty = Decimal(qty_raw).scaleb(-inst.size_precision)
        fee = Decimal(fee_raw).scaleb(-self.fee_precision)
        signed = qty if side == BUY else -qty
        m = inst.multiplier
        self.cash -= signed * price * m
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            self.cost += signed * price * m
            self.qty += signed
        else:
            closed = min(abs(signed), abs(self.qty))
            if closed == abs(self.qty):
                released = self.cost
            else:
                with localcontext(Context(prec=200)):       # the one documented rounding
                    released = (self.cost * closed / abs(self.qty)).quantize(self.quantum, ROUND_HALF_EVEN)
            sign = 1 if self.qty > 0 else -1
            self.realised += sign * closed * price * m - released
            self.cost -= released
            self.qty += signed
            if abs(signed) > closed:
                self.cost = self.qty * price * m
        self.fees += fee
        self.realised -= fee

    def unrealised(self, mark_raw):
        mark = Decimal(mark_raw).scaleb(-self.inst.price_precision)
        return self.qty * mark * self.inst.multiplier - self.cost


def _exact():
    """Everything but the documented rounding must be exact: an inexact step raises."""
    return localcontext(Context(prec=200, traps=[Inexact]))


def _check(pos: Position, model: DecimalModel, mark_raw):
    inst = model.inst
    assert pos.qty == model.qty
    assert pos.qty_raw == int(model.qty.scaleb(inst.size_precision))
    assert pos.realised == model.realised
    assert pos.fees == model.fees
    assert pos.unrealised == model.unrealised(mark_raw)
    if model.qty == 0:
        assert pos.avg_price is None and pos.cost_raw == 0
    else:
        assert pos.avg_price == Fraction(model.cost) / Fraction(model.qty * inst.multiplier)
        assert pos.avg_price > 0
    # independent of the averaging: total PnL is cash flow + position at the mark - fees
    mark = Decimal(mark_raw).scaleb(-inst.price_precision)
    assert pos.realised + pos.unrealised == model.cash + model.qty * mark * inst.multiplier - model.fees
    if model.qty == 0:
        assert pos.realised == model.cash - model.fees


@st.composite
def _fill_plans(draw):
    """Instrument scales, a fee precision, and fills drawn against the position so far so
    that exact closes, flips through zero and rounding ties come often."""
    pp = draw(st.integers(0, 8))
    sp = draw(st.integers(0, 8))
    multiplier = draw(st.sampled_from([1, 1, 1, 10, 100]))
    market = draw(st.sampled_from([MarketType.SPOT, MarketType.LINEAR_PERPETUAL]))
    fee_precision = draw(st.one_of(st.none(), st.integers(0, 18)))
    n = draw(st.integers(1, 300))
    fills, qty = [], 0
    for _ in range(n):
        side = draw(st.sampled_from([BUY, SELL]))
        against = qty != 0 and (qty > 0) != (side == BUY)
        kind = draw(st.sampled_from(["any", "any", "close", "flip", "small", "half"])) if against else "any"
        if kind == "half" and abs(qty) % 2 == 0:
            q = abs(qty) // 2                       # an odd cost basis over two: a rounding tie
        elif kind == "close":
            q = abs(qty)
        elif kind == "flip":
            q = abs(qty) + draw(st.integers(1, 10**6))
        elif kind == "small":
            q = draw(st.integers(1, max(1, abs(qty) - 1)))
        else:
            q = draw(st.integers(1, 10**7))
        price = draw(st.integers(1, 10**10))
        fee = draw(st.integers(-10**4, 10**7))
        fills.append((side, price, q, fee))
        qty += q if side == BUY else -q
    mark = draw(st.integers(1, 10**10))
    return _inst(market_type=market, price_precision=pp, size_precision=sp, multiplier=multiplier), \
        fee_precision, fills, mark


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_fill_plans())
def test_random_fills_match_the_decimal_model_exactly(plan):
    inst, fee_precision, fills, mark = plan
    pf = Portfolio(fee_precision=fee_precision)
    model = DecimalModel(inst, inst.price_precision if fee_precision is None else fee_precision)
    with _exact():
        for side, price, qty, fee in fills:
            pf.on_fill(inst, side, price, qty, fee)
            model.fill(side, price, qty, fee)
            _check(pf.position(inst, mark_raw=mark), model, mark)
        assert pf.total_realised() == model.realised
        assert pf.total_fees() == model.fees
        assert pf.equity({inst.instrument_id: mark}) == model.realised + model.unrealised(mark)
    assert pf.position(inst).fills == len(fills)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([BUY, SELL]),
                          st.integers(1, 10**8), st.integers(1, 10**6), st.integers(0, 10**4)),
                min_size=1, max_size=100),
       st.integers(1, 10**8), st.integers(1, 10**8), st.integers(1, 10**8))
def test_totals_add_instruments_at_different_scales_exactly(fills, m0, m1, m2):
    # two venues share instrument id 1; the third has other scales
    insts = [_inst(), _inst(venue="okx"), _inst(instrument_id=7, symbol="ETHUSDT", price_precision=4,
                                                size_precision=3, market_type=MarketType.LINEAR_PERPETUAL)]
    marks = {("binance", 1): m0, ("okx", 1): m1, ("binance", 7): m2}
    pf = Portfolio()
    models = [DecimalModel(i, i.price_precision) for i in insts]
    with _exact():
        for which, side, price, qty, fee in fills:
            pf.on_fill(insts[which], side, price, qty, fee)
            models[which].fill(side, price, qty, fee)
        held = [(i, m) for i, m in zip(insts, models) if pf.position(i).fills]
        assert pf.total_realised() == sum(m.realised for _, m in held)
        assert pf.total_fees() == sum(m.fees for _, m in held)
        expected = sum(m.realised + m.unrealised(marks[(i.venue, i.instrument_id)]) for i, m in held)
        assert pf.equity(marks) == expected
        assert pf.total_unrealised(marks) == sum(m.unrealised(marks[(i.venue, i.instrument_id)])
                                                 for i, m in held)


# -- explicit cases ------------------------------------------------------------------------

def test_adding_averages_exactly_even_without_a_decimal_form():
    inst = _inst()
    pf = Portfolio()
    pf.on_fill(inst, BUY, 1000, 100000)             # 1 @ 10.00
    pos = pf.on_fill(inst, BUY, 1100, 200000)       # 2 @ 11.00
    assert pos.qty == Decimal(3)
    assert pos.avg_price == Fraction(32, 3)
    assert pos.avg_price_raw == Fraction(3200, 3)
    assert pos.cost_raw == 32 * 10**7
    assert pf.avg_price(inst) == pytest.approx(32 / 3)


def test_flip_through_zero_closes_at_the_average_and_opens_the_rest_at_the_fill():
    inst = _inst()
    pf = Portfolio()
    pf.on_fill(inst, BUY, 10000, 100000)            # long 1 @ 100
    pos = pf.on_fill(inst, SELL, 11000, 300000)     # sell 3 @ 110: +10, then short 2 @ 110
    assert pos.qty == Decimal(-2)
    assert pos.realised == Decimal(10)
    assert pos.avg_price == 110
    assert pf.position(inst, mark_raw=10500).unrealised == Decimal(10)     # short 2, 5 lower
    pos = pf.on_fill(inst, BUY, 12000, 500000)      # buy 5 @ 120: -20 on the short, long 3 @ 120
    assert pos.qty == Decimal(3)
    assert pos.realised == Decimal(-10)
    assert pos.avg_price == 120


def test_closing_exactly_leaves_realised_equal_to_the_cash_flow():
    inst = _inst()
    pf = Portfolio()
    pf.on_fill(inst, BUY, 1000, 100000)
    pf.on_fill(inst, BUY, 1100, 200000)             # avg 32/3
    pf.on_fill(inst, SELL, 1200, 100000)            # releases 32/3: the one rounding
    pos = pf.on_fill(inst, SELL, 1300, 200000)      # close: whatever was rounded comes back
    assert pos.flat and pos.cost_raw == 0 and pos.avg_price is None
    assert pos.realised == Decimal(12 + 26 - 32)
    assert pos.unrealised is None
    assert pf.position(inst, mark_raw=99999).unrealised == 0


def test_partial_reduce_rounds_half_even_and_keeps_the_rest_in_the_cost_basis():
    inst = _inst(price_precision=0, size_precision=0)
    pf = Portfolio()
    pf.on_fill(inst, BUY, 10, 1)
    pf.on_fill(inst, BUY, 11, 2)                    # cost 32 over 3
    pos = pf.on_fill(inst, SELL, 12, 1)             # releases 32/3 = 10.67 -> 11
    assert pos.realised_raw == 1 and pos.cost_raw == 21
    pos = pf.on_fill(inst, SELL, 12, 1)             # releases 21/2 = 10.5 -> 10 (even)
    assert pos.realised_raw == 3 and pos.cost_raw == 11
    pos = pf.on_fill(inst, SELL, 12, 1)
    assert pos.realised_raw == 4 == 3 * 12 - 32


def test_fees_reduce_realised_and_are_counted_apart():
    inst = _inst()
    pf = Portfolio()
    pf.on_fill(inst, BUY, 1000, 100000, fee_raw=3)  # 0.03 USDT at price precision
    pos = pf.on_fill(inst, SELL, 1000, 100000, fee_raw=4)
    assert pos.fees == Decimal("0.07")
    assert pos.realised == Decimal("-0.07")
    assert pos.gross_realised == 0
    pos = pf.on_fill(inst, BUY, 1000, 100000, fee_raw=-2)   # a maker rebate
    assert pos.fees == Decimal("0.05") and pos.realised == Decimal("-0.05")
    assert pf.total_fees() == Decimal("0.05")
    assert pf.realised_pnl() == pytest.approx(-0.05)


def test_fee_precision_finer_than_the_notional_widens_the_pnl_scale():
    inst = _inst(price_precision=1, size_precision=3)
    pf = Portfolio(fee_precision=8)
    pos = pf.on_fill(inst, BUY, 670123, 1, fee_raw=2680)        # 0.001 @ 67012.3, fee 0.0000268
    assert pos.pnl_precision == 8
    assert pos.fees == Decimal("0.0000268")
    assert pos.realised == Decimal("-0.0000268")
    assert pos.avg_price == Fraction("67012.3")


def test_short_and_perpetual_with_multiplier():
    inst = _inst(market_type=MarketType.LINEAR_PERPETUAL, price_precision=1, size_precision=0, multiplier=10)
    pf = Portfolio()
    pf.on_fill(inst, SELL, 1000, 3)                 # short 3 contracts of 10 @ 100.0
    pos = pf.position(inst, mark_raw=950)
    assert pos.qty_raw == -3 and pos.avg_price == 100
    assert pos.unrealised == Decimal(150)           # 3 * 10 * 5
    pos = pf.on_fill(inst, BUY, 900, 1)
    assert pos.realised == Decimal(100) and pos.qty_raw == -2
    assert pf.unrealised_pnl(inst, 1000) == 0.0
    assert pf.position_qty(inst) == -2.0


def test_inverse_contracts_are_refused_with_a_reason():
    inst = _inst(symbol="BTCUSD_PERP", market_type=MarketType.INVERSE_PERPETUAL, quote="USD")
    with pytest.raises(ValueError, match="inverse.*linear instruments only"):
        Portfolio().on_fill(inst, BUY, 100, 1)


def test_fills_are_checked():
    inst = _inst()
    pf = Portfolio()
    with pytest.raises(ValueError, match="qty_raw must be positive"):
        pf.on_fill(inst, BUY, 100, 0)
    with pytest.raises(ValueError, match="price_raw must be positive"):
        pf.on_fill(inst, SELL, -1, 1)
    with pytest.raises(TypeError, match="must be an int"):
        pf.on_fill(inst, BUY, 100.5, 1)
    with pytest.raises(ValueError):
        pf.on_fill(inst, 3, 100, 1)
    pos = pf.on_fill(inst, BUY, np.int64(100), np.int64(2), np.int64(1))   # numpy ints are exact
    assert pos.qty_raw == 2
    with pytest.raises(ValueError, match="changed price_precision"):
        pf.on_fill(_inst(price_precision=3), BUY, 100, 1)
    pf.on_fill(_inst(), SELL, 100, 2)               # an equal instrument object is fine
    assert pf.position(1).flat


def test_instruments_are_named_by_venue_when_ids_collide():
    a, b = _inst(), _inst(venue="okx")
    pf = Portfolio()
    pf.on_fill(a, BUY, 100, 1)
    assert pf.position_qty(1) == pytest.approx(1e-5)
    pf.on_fill(b, SELL, 100, 2)
    with pytest.raises(ValueError, match="held on binance, okx"):
        pf.position(1)
    assert pf.position(("okx", 1)).qty_raw == -2
    assert pf.position(a).qty_raw == 1
    with pytest.raises(ValueError, match="ambiguous"):
        pf.equity({1: 100})
    with pytest.raises(KeyError, match="no mark for BTCUSDT on okx"):
        pf.equity({("binance", 1): 100})
    assert pf.equity({("binance", 1): 110, ("okx", 1): 90}) == Decimal("0.000003")   # +1e-6 long, +2e-6 short
    assert [p.venue for p in pf.positions()] == ["binance", "okx"]


def test_totals_refuse_to_add_quote_currencies():
    pf = Portfolio()
    pf.on_fill(_inst(), BUY, 100, 1)
    pf.on_fill(_inst(instrument_id=2, symbol="ETHBTC", quote="BTC"), BUY, 100, 1, fee_raw=1)
    with pytest.raises(ValueError, match="BTC, USDT: totals need quote="):
        pf.total_realised()
    assert pf.total_fees(quote="BTC") == Decimal("0.01")
    assert pf.total_fees(quote="USDT") == 0


def test_unknown_instruments_are_flat_or_a_key_error():
    pf = Portfolio()
    assert pf.position(_inst()).flat
    assert pf.position_qty(1) == 0.0 and pf.realised_pnl(1) == 0.0
    with pytest.raises(KeyError):
        pf.position(1)
    assert pf.equity({}) == 0


def test_exec_reports_apply_their_last_fill():
    inst = _inst()
    pf = Portfolio()
    report = ExecReport()
    report.instrument_id = 1
    report.side = int(BUY)
    assert pf.on_exec_report(inst, report) is None             # an ack: no fill
    report.last_price, report.last_qty, report.fee = 1000, 100000, 5
    pos = pf.on_exec_report(inst, report)
    assert pos.qty == 1 and pos.fees == Decimal("0.05")
    report.instrument_id = 2
    with pytest.raises(ValueError, match="instrument 2"):
        pf.on_exec_report(inst, report)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_fill_plans(), st.integers(0, 60))
def test_a_restored_position_carries_on_exactly_as_the_one_it_was_taken_from(plan, cut):
    """A restarted strategy takes its positions from the gateway's books (SYNC): restored midway,
    the rest of the fills land where they would have without the restart."""
    inst, fee_precision, fills, mark = plan
    whole, first = Portfolio(fee_precision=fee_precision), Portfolio(fee_precision=fee_precision)
    cut = min(cut, len(fills))
    for side, price, qty, fee in fills[:cut]:
        whole.on_fill(inst, side, price, qty, fee)
        first.on_fill(inst, side, price, qty, fee)
    resumed = Portfolio(fee_precision=fee_precision)
    p = first.position(inst)
    resumed.restore(inst, p.qty_raw, p.cost_raw, p.realised_raw, p.fees_raw, p.fills)
    for side, price, qty, fee in fills[cut:]:
        whole.on_fill(inst, side, price, qty, fee)
        resumed.on_fill(inst, side, price, qty, fee)
    assert resumed.position(inst, mark_raw=mark) == whole.position(inst, mark_raw=mark)
    with pytest.raises(TypeError, match="qty_raw must be an int"):
        resumed.restore(inst, 1.5, 0, 0, 0, 0)
