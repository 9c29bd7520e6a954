"""What the Binance adapter's tests share: the simulated venue seen from outside (SimBinance: its REST, its
faults, its own record), the gateway's runner as BinanceAdapter.open uses it, md's instrument table and an
adapter opened from a gateway config on the venue (instrument_table, open_adapter), what an adapter reported
(AdapterReports), records.Order builders, and the OMS's view of a run (as_the_oms_applies)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

from ttquant.core.daemon.config import parse_config
from ttquant.core.gateway.config import GatewayConfig
from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
from ttquant.core.records import Order, OrderAction, OrderType, Side
from ttquant.core.records import OrderStatus as S
from ttquant.core.venues.binance.signing import HmacSigner, signed_query

from ttq_testing import wait_for

KEY, SECRET = "simKey1", "simSecret1"       # the venue's keys file and the adapters' credentials say these
ED_KEY = "simKeyEd"                         # an Ed25519 key's name, when a test registers one
ENDED = (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED)


class AdapterRunner:
    """The gateway's runner as far as open() uses it: wait_for calls fn until it gives something."""

    def __init__(self):
        self.waited = []

    def wait_for(self, what, fn, hint=None):
        self.waited.append(what)
        return wait_for(lambda: fn(), timeout=30, interval=0.05, what=what)


def write_credentials(path, secret=SECRET, key=KEY):
    """An adapter's credentials file (HMAC), mode 0600; its path."""
    path.write_text(f'api_key = "{key}"\nsecret = "{secret}"\n')
    path.chmod(0o600)
    return path


def instrument_table(venue, rings, market="spot") -> InstrumentTable:
    """md's instrument table of the venue's `market` (from its exchangeInfo), saved where md saves it for
    `rings`; the caller removes instruments_path(rings)."""
    table = InstrumentTable("binance")
    path = "/api/v3/exchangeInfo" if market == "spot" else "/fapi/v1/exchangeInfo"
    merge_instruments(table, instruments_from_exchange_info(venue.get(path), market)[0])
    table.save(instruments_path(rings))
    return table


def gateway_config(venue, root, rings, **adapter) -> GatewayConfig:
    """A gateway config in `root` on the venue's REST (environment custom, our key's credentials file beside
    it), `adapter` the rest of its [adapter] table."""
    if not (root / "binance.toml").exists():
        write_credentials(root / "binance.toml")
    return parse_config({"venue": "binance", "rings": {"name": rings},
                         "adapter": {"kind": "binance", "environment": "custom", "rest_url": venue.base,
                                     "credentials": "./binance.toml", **adapter}},
                        GatewayConfig, str(root / "gateway.toml"), instance="binance")


def open_adapter(venue, root, rings, runner=None, **adapter):
    """BinanceAdapter.open of gateway_config(venue, root, rings, **adapter)."""
    from ttquant.core.venues.binance.adapter import BinanceAdapter
    return BinanceAdapter.open(gateway_config(venue, root, rings, **adapter), runner or AdapterRunner())


class SimBinance:
    """venue-sim's Binance order entry from outside, for one market: REST on its REST port, its faults and
    its own record; the URLs an adapter is given."""

    def __init__(self, main_port, rest_port, market="spot", key=KEY, secret=SECRET):
        self.main, self.base = f"http://127.0.0.1:{main_port}", f"http://127.0.0.1:{rest_port}"
        self.ws_url = f"ws://127.0.0.1:{main_port}/" + ("ws-api/v3" if market == "spot" else "ws-fapi/v1")  # its WS API
        self.stream_url = f"ws://127.0.0.1:{main_port}/ws"           # futures' listen key streams
        self.market, self.key, self.secret = market, key, secret

    def get(self, path, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with urllib.request.urlopen(f"{self.base}{path}?{query}", timeout=10) as resp:
            return json.loads(resp.read())

    def signed_with_headers(self, method, path, **params):
        query = signed_query(HmacSigner(self.secret), list(params.items()), int(time.time() * 1000))
        req = urllib.request.Request(f"{self.base}{path}?{query}", method=method, headers={"X-MBX-APIKEY": self.key})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read()), resp.headers

    def signed(self, method, path, **params):
        return self.signed_with_headers(method, path, **params)[0]

    def fault(self, kind, **params):
        return self.get("/_sim/fault", kind=kind, **params)

    def record(self):
        return self.get("/_sim/binance/orders")

    def orders_with(self, client_order_id):
        return [o for o in self.record()["orders"]
                if o["clientOrderId"] == client_order_id and o.get("market", "spot") == self.market]

    def trades_of(self, *client_order_ids):
        ids = {o["orderId"] for cid in client_order_ids for o in self.orders_with(cid)}
        return [t for t in self.record()["trades"] if t.get("market", "spot") == self.market and t["orderId"] in ids]

    def depth(self, limit=5):
        return self.get("/api/v3/depth" if self.market == "spot" else "/fapi/v1/depth", symbol="BTCUSDT", limit=limit)

    def top(self):
        body = self.depth()
        return Decimal(body["bids"][0][0]), Decimal(body["asks"][0][0])

    def futures_ready(self):
        """The venue's futures order entry answers (a GET /fapi/v1/order without a key: refused, not 404)."""
        try:
            self.get("/fapi/v1/order", symbol="BTCUSDT")
        except urllib.error.HTTPError as exc:
            return exc.code != 404
        return True


def api_keys_file(root, ed_signer=None, key=KEY, secret=SECRET):
    """venue-sim's --api-keys file in `root`, mode 0600: the HMAC key, and ED_KEY with the public half of
    `ed_signer` (signing.Ed25519Signer) when one is given."""
    lines = ["# venue-sim's keys for this test", f"{key} hmac {secret}"]     # a comment line: the format has them
    if ed_signer is not None:
        (root / "ed.pem").write_text(ed_signer.public_key_pem())
        lines.append(f"{ED_KEY} ed25519 ed.pem")
    keys = root / "keys"
    keys.write_text("\n".join(lines) + "\n")
    keys.chmod(0o600)
    return keys


def new_order(inst, strategy, cid, side, price, qty, kind=OrderType.LIMIT, reduce_only=0):
    return Order(ts_created=time.time_ns(), strategy_id=strategy, client_order_id=cid, instrument_id=inst.instrument_id,
                 action=OrderAction.NEW, side=side, order_type=kind, price=inst.price_to_raw(price) if price else 0,
                 qty=inst.qty_to_raw(qty), reduce_only=reduce_only)


def cancel(strategy, cid):
    return Order(ts_created=time.time_ns(), strategy_id=strategy, action=OrderAction.CANCEL, target_order_id=cid)


def amend(inst, strategy, cid, side, price, qty):
    return Order(ts_created=time.time_ns(), strategy_id=strategy, client_order_id=cid + 1000, target_order_id=cid,
                 instrument_id=inst.instrument_id, action=OrderAction.AMEND, side=side, order_type=OrderType.LIMIT,
                 price=inst.price_to_raw(price), qty=inst.qty_to_raw(qty))


class AdapterReports:
    """Everything the adapter reported in a test, by order."""

    def __init__(self, adapter):
        self.adapter, self.all = adapter, []

    def until(self, done, timeout=20, what="reports"):
        def check():
            self.all.extend(self.adapter.poll())
            return done(self)
        wait_for(check, timeout=timeout, interval=0.005, what=f"{what}; so far {self.all}")

    def of(self, strategy, cid):
        return [r for r in self.all if (r.strategy_id, r.client_order_id) == (strategy, cid)]

    def status(self, strategy, cid):
        """The order's state by what was reported, as the OMS would take it (fills decide by quantity)."""
        reps = self.of(strategy, cid)
        qty = max((r.qty for r in reps), default=0)
        if qty and sum(r.last_qty for r in reps) >= qty:
            return S.FILLED
        ended = [r.status for r in reps if r.status in ENDED]
        return ended[-1] if ended else (reps[-1].status if reps else None)

    def fills(self, strategy, cid):
        return [r for r in self.of(strategy, cid) if r.last_qty]


def rest_both_sides(venue, inst, adapter, got, strategy, qty):
    """A buy at the best bid and a sell at the best ask, both resting; the book's next move fills one."""
    bid, ask = venue.top()
    orders = [new_order(inst, strategy, 1, Side.BUY, bid, qty), new_order(inst, strategy, 2, Side.SELL, ask, qty)]
    for order in orders:
        assert adapter.send(order)
    got.until(lambda g: g.of(strategy, 1) and g.of(strategy, 2), what="both acknowledged")
    return orders


def cancel_resting(adapter, got, strategy):
    """Cancel what of rest_both_sides' two is still open; both ended."""
    for cid in (1, 2):
        if got.status(strategy, cid) not in (S.FILLED, S.CANCELED):
            adapter.send(cancel(strategy, cid))
    got.until(lambda g: all(g.status(strategy, c) in (S.FILLED, S.CANCELED) for c in (1, 2)), what="both ended")


def placed_once_after_a_clock_jump(venue, adapter, got, inst, strategy, price, qty):
    """The venue's clock jumps 9 s ahead (beyond recvWindow): the next order is refused -1021, the adapter measures
    the clock again and sends it once more: accepted, placed once; then canceled."""
    venue.fault("clock_skew", ms=9000)
    try:
        assert adapter.send(new_order(inst, strategy, 1, Side.BUY, price, qty))
        got.until(lambda g: g.status(strategy, 1) == S.ACCEPTED)
        assert 8000 < adapter.rest.clock.offset_ms - time.time() * 1000 + time.monotonic() * 1000 < 10000
        assert len(venue.orders_with(f"t{strategy}-1")) == 1
    finally:
        venue.fault("clock_skew", ms=0)
    assert adapter.send(cancel(strategy, 1))
    got.until(lambda g: g.status(strategy, 1) == S.CANCELED)


def as_the_oms_applies(orders, reports, venue, inst):
    """The gateway's OMS fed the orders and every report: each order's filled quantity is the venue's."""
    oms = OrderBookKeeper()
    for order in orders:
        oms.add(order, order.price)
    for rep in reports:
        oms.apply(rep)
    for order in orders:
        (on_venue,) = venue.orders_with(f"t{order.strategy_id}-{order.client_order_id}")
        st = oms.get(order.strategy_id, order.client_order_id)
        assert st.cum_qty == inst.qty_to_raw(Decimal(on_venue["executedQty"])), (st, on_venue)
    assert oms.counts["overfills"] == 0 and oms.counts["duplicate_fills"] == 0
    return oms
