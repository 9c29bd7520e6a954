"""The gateway's pre-trade checks: every reject code, in the documented order, over real Binance
instruments (BTCUSDT spot at 8/8 decimals, USDT-M at 2/3); reservations and fills keep the
state exact; a bad risk file names the key and leaves the limits in force."""
from decimal import Decimal

import orjson
import pytest

from ttquant.core.gateway.risk import RiskEngine
from ttquant.core.gateway.risk_config import RiskConfigError, load_risk_limits, parse_risk_limits
from ttquant.core.instruments import InstrumentTable, MarketType
from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
from ttquant.core.records import Order, OrderAction, OrderType, RejectCode, Side
from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir

NOW = 1_700_000_000_000_000_000
SID = 7


@pytest.fixture(scope="module")
def table():
    t = InstrumentTable("binance")
    for market, name in (("spot", "cryptofeed_spot_exchangeinfo.0"), ("usdm", "cryptofeed_usdm_exchangeinfo.0")):
        (msg,) = read_cryptofeed_http(sample_data_dir() / "binance" / name)
        merge_instruments(t, instruments_from_exchange_info(orjson.loads(msg.payload), market, symbols=["BTCUSDT"])[0])
    return t


@pytest.fixture
def spot(table):
    return table.by_symbol("BTCUSDT", MarketType.SPOT)


@pytest.fixture
def perp(table):
    return table.by_symbol("BTCUSDT", MarketType.LINEAR_PERPETUAL)


LIMITS = {
    "max_order_age_ms": 500, "fat_finger_pct": 5.0, "max_notional": 200_000,
    "max_open_orders": 3, "max_open_orders_per_strategy": 2, "daily_loss_limit": 1000, "leverage": 10,
    "rate_limit": {"orders_per_s": 1000, "burst": 1000, "strategy_orders_per_s": 1000, "strategy_burst": 1000},
    "balances": {"USDT": 100_000, "BTC": 1},
    "instruments": {"spot": {"BTCUSDT": {"max_position": 3, "max_notional": 150_000}}},
    "strategies": {str(SID): {"usdm": {"BTCUSDT": {"max_position": 0.5}}}},
}


def engine(table, **changes):
    doc = {**LIMITS, **changes}
    e = RiskEngine(parse_risk_limits(doc, table), table)
    for inst in table:
        e.on_trade(inst.instrument_id, inst.price_to_raw("60000"))
        e.on_quote(inst.instrument_id, inst.price_to_raw("59999"), inst.price_to_raw("60001"))
    return e


def order(inst, side=Side.BUY, price="60000", qty="0.1", order_type=OrderType.LIMIT, **fields):
    values = dict(ts_created=NOW, client_order_id=1, strategy_id=SID, instrument_id=inst.instrument_id,
                  action=OrderAction.NEW, side=side, order_type=order_type,
                  price=inst.price_to_raw(price) if price is not None else 0, qty=inst.qty_to_raw(qty))
    values.update(fields)
    return Order(**values)


def test_a_good_order_passes(table, spot, perp):
    e = engine(table)
    assert e.check_order(order(spot), NOW) == 0
    assert e.check_order(order(perp, side=Side.SELL), NOW) == 0
    assert e.check_order(order(spot, price=None, order_type=OrderType.MARKET), NOW) == 0


@pytest.mark.parametrize("case,code", [
    ("too_old", RejectCode.ORDER_TOO_OLD),
    ("unknown_instrument", RejectCode.UNKNOWN_INSTRUMENT),
    ("off_tick", RejectCode.BAD_PRICE),
    ("below_min_price", RejectCode.BAD_PRICE),
    ("market_with_price", RejectCode.BAD_PRICE),
    ("off_step", RejectCode.BAD_QTY),
    ("below_min_qty", RejectCode.BAD_QTY),
    ("below_min_notional", RejectCode.BAD_QTY),
    ("fat_finger", RejectCode.FAT_FINGER),
    ("max_notional", RejectCode.MAX_NOTIONAL),
    ("position_limit", RejectCode.POSITION_LIMIT),
    ("strategy_position_limit", RejectCode.POSITION_LIMIT),
    ("funds", RejectCode.INSUFFICIENT_FUNDS),
    ("funds_base", RejectCode.INSUFFICIENT_FUNDS),
    ("bad_side", RejectCode.BAD_FIELD),
    ("reduce_only", RejectCode.REDUCE_ONLY),
])
def test_each_check_refuses_with_its_code(table, spot, perp, case, code):
    e = engine(table)
    o = {
        "too_old": lambda: order(spot, ts_created=NOW - 501_000_000),
        "unknown_instrument": lambda: order(spot, instrument_id=99),
        "off_tick": lambda: order(spot, price="60000.005"),
        "below_min_price": lambda: order(perp, price="100.00"),
        "market_with_price": lambda: order(spot, order_type=OrderType.MARKET),
        "off_step": lambda: order(spot, qty="0.1000001"),
        "below_min_qty": lambda: order(perp, qty="0.0005".rstrip("5") + "0", price="60000"),
        "below_min_notional": lambda: order(spot, qty="0.0001"),
        "fat_finger": lambda: order(spot, price="63000.01"),
        "max_notional": lambda: order(spot, qty="2.6"),
        "position_limit": lambda: order(spot, qty="3.01", price="30000", ts_created=NOW),
        "strategy_position_limit": lambda: order(perp, qty="0.6"),
        "funds": lambda: order(spot, qty="1.7"),
        "funds_base": lambda: order(spot, side=Side.SELL, qty="1.5"),
        "bad_side": lambda: order(spot, side=3),
        "reduce_only": lambda: order(perp, reduce_only=1),
    }[case]()
    if case == "below_min_qty":
        o = order(perp, qty="0.001")
        o.qty = 0                   # below USDT-M min qty 0.001
    if case == "position_limit":
        e.on_trade(spot.instrument_id, spot.price_to_raw("30000"))
    assert e.check_order(o, NOW) == code


def test_rate_limit_open_orders_and_kill_switch(table, spot):
    e = engine(table, rate_limit={"orders_per_s": 2, "burst": 2})
    assert [e.check_order(order(spot), NOW) for _ in range(3)] == [0, 0, RejectCode.RATE_LIMIT]
    assert e.check_order(order(spot), NOW + 500_000_000) == 0        # one token back after 0.5 s
    e = engine(table)
    for k in range(2):
        assert e.check_and_reserve(order(spot, client_order_id=k), NOW) == 0
    assert e.check_order(order(spot, client_order_id=3), NOW) == RejectCode.MAX_OPEN_ORDERS
    other = order(spot, strategy_id=8)
    assert e.check_and_reserve(other, NOW) == 0                       # the strategy limit is per strategy
    assert e.check_order(order(spot, strategy_id=9), NOW) == RejectCode.MAX_OPEN_ORDERS   # the global one
    e = engine(table)
    e.kill_switch = True
    assert e.check_order(order(spot), NOW) == RejectCode.KILL_SWITCH
    cancel = order(spot, action=OrderAction.CANCEL, target_order_id=1)
    assert e.check_order(cancel, NOW) == 0                            # cancels always go through
    e.kill_switch = False
    e.daily_pnl = -1000 * 10**8
    assert e.check_order(order(spot), NOW) == RejectCode.KILL_SWITCH


def test_checks_run_in_the_documented_order(table, spot):
    """An order failing everything gets the first code of DESIGN.md's order, and each fix
    reveals the next one."""
    limits = {**LIMITS, "rate_limit": {"orders_per_s": 1, "burst": 1},
              "instruments": {"spot": {"BTCUSDT": {"max_position": 2, "max_notional": 150_000}}}}
    e = RiskEngine(parse_risk_limits(limits, table), table)
    e.on_trade(spot.instrument_id, spot.price_to_raw("60000"))
    e.kill_switch = True
    o = order(spot, ts_created=NOW - 10**9, instrument_id=99, price="60000.005", qty="0.1000001")
    fixes = [
        (RejectCode.ORDER_TOO_OLD, lambda: setattr(o, "ts_created", NOW)),
        (RejectCode.UNKNOWN_INSTRUMENT, lambda: setattr(o, "instrument_id", spot.instrument_id)),
        (RejectCode.BAD_PRICE, lambda: setattr(o, "price", spot.price_to_raw("70000"))),
        (RejectCode.BAD_QTY, lambda: setattr(o, "qty", spot.qty_to_raw("3.5"))),
        (RejectCode.FAT_FINGER, lambda: setattr(o, "price", spot.price_to_raw("60000"))),
        (RejectCode.MAX_NOTIONAL, lambda: setattr(o, "qty", spot.qty_to_raw("2.4"))),
        (RejectCode.POSITION_LIMIT, lambda: e.apply_limits(parse_risk_limits(
            {**limits, "instruments": {}}, table))),
        (RejectCode.INSUFFICIENT_FUNDS, lambda: e.set_balance("USDT", 10**6 * 10**8)),
        (RejectCode.KILL_SWITCH, None),     # the rate check passed and took the only token
        (RejectCode.RATE_LIMIT, None),      # so now the rate check, which comes first, refuses
    ]
    for code, fix in fixes:
        assert e.check_order(o, NOW) == code, code
        if fix:
            fix()
    e.kill_switch = False
    o.ts_created = NOW + 10**9              # a second later the bucket has a token again
    assert e.check_order(o, NOW + 10**9) == 0


def test_reserve_fill_and_release_keep_the_state_exact(table, spot, perp):
    e = engine(table)
    buy = order(spot, qty="0.5", price="60000")
    assert e.check_and_reserve(buy, NOW) == 0
    s = e.state()
    assert s["reserved"]["USDT"] == 30_000 * 10**8 and s["instruments"][spot.instrument_id]["open_buy"] == buy.qty
    fee = 3 * 10**7                                     # 0.3 USDT
    e.on_fill(SID, spot.instrument_id, Side.BUY, spot.price_to_raw("59990"), spot.qty_to_raw("0.2"),
              buy.price, fee)
    s = e.state()
    assert s["balances"]["BTC"] == int(Decimal("1.2") * 10**8)
    assert s["balances"]["USDT"] == int((Decimal(100_000) - Decimal("59990") * Decimal("0.2") - Decimal("0.3")) * 10**8)
    assert s["reserved"]["USDT"] == int(Decimal(60000) * Decimal("0.3") * 10**8)
    assert s["strategies"][SID]["positions"][spot.instrument_id] == spot.qty_to_raw("0.2")
    e.release(SID, spot.instrument_id, Side.BUY, spot.qty_to_raw("0.3"), buy.price)
    s = e.state()
    assert s["reserved"]["USDT"] == 0 and s["open_orders"] == 0
    assert s["instruments"][spot.instrument_id] == {"position": spot.qty_to_raw("0.2"), "open_buy": 0, "open_sell": 0,
                                                    "entry_value": 0}
    # perpetual: margin = notional / leverage is held, and the strategy position limit counts open orders
    short = order(perp, side=Side.SELL, qty="0.3")
    assert e.check_and_reserve(short, NOW) == 0
    assert e.state()["reserved"]["USDT"] == 60000 * 3 // 10 * 10**8 // 10
    assert e.check_order(order(perp, side=Side.SELL, qty="0.3", client_order_id=2), NOW) == RejectCode.POSITION_LIMIT
    assert e.check_order(order(perp, side=Side.BUY, qty="0.3", client_order_id=3), NOW) == 0
    # filled: the order's margin becomes the position's (entry value / leverage), still held
    usdt = lambda text: int(Decimal(text) * 10**8)          # noqa: E731
    before = e.state()["balances"]["USDT"]
    e.on_fill(SID, perp.instrument_id, Side.SELL, perp.price_to_raw("60000"), perp.qty_to_raw("0.3"), short.price,
              0, order_done=True)
    s = e.state()
    assert s["reserved"]["USDT"] == usdt("1800")
    assert s["instruments"][perp.instrument_id]["entry_value"] == usdt("18000")
    # a third bought back 1000 lower: +100 realised into the balance (less the fee), a third of the margin freed
    e.on_fill(SID, perp.instrument_id, Side.BUY, perp.price_to_raw("59000"), perp.qty_to_raw("0.1"), 0, usdt("3"),
              reserved=False)
    s = e.state()
    assert s["balances"]["USDT"] == before + usdt("100") - usdt("3")
    assert s["reserved"]["USDT"] == usdt("1200")
    # through zero: the rest closes (+400: 0.2 at 2000 lower), the remainder opens a long at 58000
    e.on_fill(SID, perp.instrument_id, Side.BUY, perp.price_to_raw("58000"), perp.qty_to_raw("0.3"), 0, 0,
              reserved=False)
    s = e.state()
    assert s["balances"]["USDT"] == before + usdt("500") - usdt("3")
    assert s["instruments"][perp.instrument_id]["entry_value"] == usdt("5800")
    assert s["reserved"]["USDT"] == usdt("580") and s["instruments"][perp.instrument_id]["position"] == \
        perp.qty_to_raw("0.1")


def test_a_bad_risk_file_names_the_file_and_key(table, tmp_path):
    cases = {
        'max_order_age_ms = "soon"\n': "max_order_age_ms",
        "[instruments.spot.BTCUSDT]\nmax_position = -1\n": "instruments.spot.BTCUSDT.max_position",
        "[instruments.spot.DOGEUSDT]\nmax_position = 1\n": "instruments.spot.DOGEUSDT",
        "[instruments.spot.BTCUSDT]\nmax_position = 0.000000001\n": "instruments.spot.BTCUSDT.max_position",
        "[strategies.mm.spot.BTCUSDT]\nmax_position = 1\n": "strategies.mm",
        "[balances]\nUSDT = true\n": "balances.USDT",
        "fat_finger_reference = 'close'\n": "fat_finger_reference",
        "max_open_order = 5\n": "max_open_order",
        "[rate_limit]\norders_per_s = -1\n": "rate_limit.orders_per_s",
        "not toml [": "not valid TOML",
    }
    for text, key in cases.items():
        path = tmp_path / "risk.toml"
        path.write_text(text)
        with pytest.raises(RiskConfigError) as err:
            load_risk_limits(str(path), table)
        assert str(path) in str(err.value) and key in str(err.value), (text, str(err.value))


def test_reload_keeps_positions_and_open_orders(table, spot, tmp_path):
    e = engine(table)
    assert e.check_and_reserve(order(spot, qty="1"), NOW) == 0
    path = tmp_path / "risk.toml"
    path.write_text("max_open_orders = 1\n[instruments.spot.BTCUSDT]\nmax_position = 0.5\n")
    e.apply_limits(load_risk_limits(str(path), table))
    assert e.state()["open_orders"] == 1 and e.state()["instruments"][spot.instrument_id]["open_buy"] == 10**8
    assert e.check_order(order(spot, qty="0.1", client_order_id=2), NOW) == RejectCode.POSITION_LIMIT
    assert e.state()["balances"]["USDT"] == 100_000 * 10**8          # balances kept (reset_balances false)
