"""BinanceRest against a stub Binance on 127.0.0.1 that checks every SIGNED request as the simulated venue
does (core.sim.binance_auth.check_signed) and answers Binance's bodies, or a fault when told to."""
import collections
import json
import logging
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, Side
from ttquant.core.sim.binance_auth import ApiKeys, check_signed
from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.binance import rest as rest_module
from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.errors import Action
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.responses import order_reports, venue_order
from ttquant.core.venues.binance.rest import (
    BinanceRest,
    Halted,
    OrderRejected,
    RateLimited,
    ResultUnknown,
    VenueUnreachable,
    amend_params,
    order_params,
)
from ttquant.core.venues.binance.signing import Ed25519Signer, HmacSigner

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
ED_KEY = "edKey0123456789abcdefABCDEF"
ED_PRIVATE = Ed25519PrivateKey.generate()
ED_PEM = ED_PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())

DATA = sample_data_dir() / "binance"
SPOT_INFO = json.loads((DATA / "cryptofeed_spot_exchangeinfo.0").read_text().split(": ", 1)[1].splitlines()[0])

BTC = Instrument(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT, base="BTC",
                 quote="USDT", price_precision=2, size_precision=5, tick_size=1, step_size=1, min_qty=1, max_qty=0,
                 min_price=1, max_price=0, min_notional=0)
BTC_PERP = Instrument(instrument_id=2, venue="binance", symbol="BTCUSDT", market_type=MarketType.LINEAR_PERPETUAL,
                      base="BTC", quote="USDT", price_precision=1, size_precision=3, tick_size=1, step_size=1,
                      min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=0)


def new_order(cid=1, order_type=OrderType.LIMIT, side=Side.BUY, price=3000012, qty=5000, reduce_only=0,
              strategy_id=7, instrument_id=1):
    return Order(client_order_id=cid, strategy_id=strategy_id, action=OrderAction.NEW, instrument_id=instrument_id,
                 side=side, order_type=order_type, price=price, qty=qty, reduce_only=reduce_only)


# -- the stub venue ------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self.stub.cond:
            self.stub.closed += 1
            self.stub.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Binance

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.server.stub.connections += 1

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        stub = self.server.stub
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(url.query))
        stub.requests.append((method, url.path, params))
        if url.path.endswith("/time"):
            return self._reply(200, {"serverTime": int(stub.now_ms() + stub.time_lie_ms)})
        refusal = check_signed(stub.keys, method, url.query, body, dict(self.headers.items()), stub.now_ms())
        if refusal is not None:
            stub.refusals.append(refusal[1]["code"])
            return self._reply(*refusal)
        queue = stub.faults[(method, url.path)]
        fault = queue.popleft() if queue else None
        if fault is None:
            return self._reply(*stub.answer(method, url.path, params))
        kind, *rest = fault
        if kind == "reply":  # refuse without executing
            status, answer, headers = rest
            return self._reply(status, answer, headers)
        stub.answer(method, url.path, params)  # the venue executes, then the answer is lost
        if kind == "executed_then_reply":
            status, answer = rest
            return self._reply(status, answer)
        if kind == "executed_then_drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "executed_then_hang":
            stub.release.wait(10)
            self.close_connection = True
            return
        if kind == "reply_then_close":  # an idle keep-alive connection the server closes
            self.close_connection = True
            return self._reply(*stub.answer(method, url.path, params))
        raise AssertionError(kind)

    def _reply(self, status, answer, headers=None):
        stub = self.server.stub
        stub.weight += 1
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-MBX-USED-WEIGHT-1M", str(stub.weight))
        self.send_header("X-MBX-ORDER-COUNT-10S", str(stub.order_count))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class StubBinance:
    def __init__(self, market="spot"):
        self.market = market
        self.prefix = "/api/v3" if market == "spot" else "/fapi/v1"
        self.keys = ApiKeys()
        self.keys.add_hmac(API_KEY, SECRET)
        self.keys.add_ed25519(ED_KEY, ED_PRIVATE.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.skew_ms = 0.0        # the venue's clock against ours
        self.time_lie_ms = 0.0    # what /time says beyond the venue's own clock
        self.requests, self.refusals = [], []
        self.faults = collections.defaultdict(collections.deque)
        self.orders: dict[str, dict] = {}
        self.trades: list[dict] = []
        self.weight = self.order_count = self.connections = self.closed = 0
        self.cond = threading.Condition()
        self.release = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.stub = self
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def now_ms(self):
        return time.time() * 1000 + self.skew_ms

    def count(self, method, path="/order"):
        return sum(1 for m, p, _ in self.requests if m == method and p == self.prefix + path)

    def wait_closed(self, n):
        with self.cond:
            assert self.cond.wait_for(lambda: self.closed >= n, timeout=5)

    def answer(self, method, path, params):
        path = path.removeprefix(self.prefix)
        if (method, path) == ("POST", "/order"):
            self.order_count += 1
            cid = params["newClientOrderId"]
            order = {"symbol": params["symbol"], "orderId": 1000 + len(self.orders), "clientOrderId": cid,
                     "price": params.get("price", "0"), "origQty": params["quantity"], "executedQty": "0",
                     "status": "NEW", "type": params["type"], "side": params["side"],
                     "timeInForce": params.get("timeInForce", "GTC"), "updateTime": int(self.now_ms())}
            answer = dict(order, transactTime=int(self.now_ms()))
            if params["type"] == "MARKET":
                order.update(status="FILLED", executedQty=params["quantity"])
                answer.update(order, fills=[{"price": "30000.50", "qty": params["quantity"], "commission": "0.01",
                                             "commissionAsset": "USDT", "tradeId": 77}])
            elif self.market == "spot":
                answer["fills"] = []
            self.orders[cid] = order
            return 200, answer
        if (method, path) == ("GET", "/order"):
            order = self.orders.get(params["origClientOrderId"])
            return (200, order) if order else (400, {"code": -2013, "msg": "Order does not exist."})
        if (method, path) == ("DELETE", "/order"):
            order = self.orders.get(params["origClientOrderId"])
            if order is None or order["status"] != "NEW":
                return 400, {"code": -2011, "msg": "Unknown order sent."}
            order["status"] = "CANCELED"
            return 200, dict(order, origClientOrderId=order["clientOrderId"], clientOrderId="cancel1")
        if (method, path) == ("GET", "/myTrades"):
            start, limit = int(params.get("startTime", 0)), int(params["limit"])
            rows = [t for t in self.trades if t["time"] >= start and int(t["id"]) >= int(params.get("fromId", 0))]
            return 200, rows[:limit]
        if (method, path) == ("GET", "/account"):
            return 200, {"balances": [{"asset": "USDT", "free": "100.5", "locked": "0.25"}]}
        return 404, {"code": -1000, "msg": f"no {method} {path} in this stub"}

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = StubBinance()
    yield s
    s.close()


@pytest.fixture
def usdm_stub():
    s = StubBinance("usdm")
    yield s
    s.close()


class FakeClock:
    def __init__(self):
        self.t = 500.0

    def __call__(self):
        return self.t


def hmac_credentials(secret=SECRET):
    return ApiCredentials(API_KEY, HmacSigner(secret), "test")


def client(stub, credentials=None, market="spot", **kw):
    kw.setdefault("limits", RateLimits.from_exchange_info(SPOT_INFO))
    return BinanceRest(stub.url, credentials or hmac_credentials(), market=market, **kw)


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in text and API_KEY not in text and ED_PEM.decode() not in text
        assert "signature=" not in text and "timestamp=" not in text  # no query string either


def exception_text(exc):
    return "".join(traceback.format_exception(exc)) + repr(exc)


# -- the order's params ----------------------------------------------------------------------------------
@pytest.mark.parametrize("order_type, market, expected", [
    (OrderType.LIMIT, "spot", [("type", "LIMIT"), ("timeInForce", "GTC")]),
    (OrderType.IOC, "spot", [("type", "LIMIT"), ("timeInForce", "IOC")]),
    (OrderType.FOK, "spot", [("type", "LIMIT"), ("timeInForce", "FOK")]),
    (OrderType.POST_ONLY, "spot", [("type", "LIMIT_MAKER")]),
    (OrderType.MARKET, "spot", [("type", "MARKET")]),
    (OrderType.POST_ONLY, "usdm", [("type", "LIMIT"), ("timeInForce", "GTX")]),
    (OrderType.MARKET, "usdm", [("type", "MARKET")]),
])
def test_order_types_map_to_binance(order_type, market, expected):
    params = order_params(new_order(cid=42, order_type=order_type, side=Side.SELL), BTC, market)
    price = [] if order_type == OrderType.MARKET else [("price", "30000.12")]
    assert [(k, str(v)) for k, v in params] == [
        ("symbol", "BTCUSDT"), ("side", "SELL"), *expected, ("quantity", "0.05000"), *price,
        ("newClientOrderId", "t7-42"), ("newOrderRespType", "FULL" if market == "spot" else "RESULT")]


def test_reduce_only_is_sent_on_futures_and_refused_on_spot():
    assert ("reduceOnly", "true") in order_params(new_order(reduce_only=1), BTC_PERP, "usdm")
    with pytest.raises(ValueError, match="futures only"):
        order_params(new_order(reduce_only=1), BTC, "spot")


def amend(target=42, price=3000100, qty=8000, side=Side.BUY):
    return Order(client_order_id=50, strategy_id=7, action=OrderAction.AMEND, target_order_id=target,
                 instrument_id=1, side=side, price=price, qty=qty)


def test_a_spot_amend_is_a_cancel_replace_that_gives_the_new_order_our_client_order_id_again():
    params = amend_params(amend(), BTC, "spot", OrderType.LIMIT, filled_qty=3000, venue_order_id=991)
    assert [(k, str(v)) for k, v in params] == [
        ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
        ("quantity", "0.05000"), ("price", "30001.00"), ("cancelReplaceMode", "STOP_ON_FAILURE"),
        ("cancelOrderId", "991"), ("newClientOrderId", "t7-42"), ("newOrderRespType", "FULL")]
    by_id = dict(amend_params(amend(), BTC, "spot", OrderType.POST_ONLY))
    assert (by_id["type"], by_id["cancelOrigClientOrderId"], str(by_id["quantity"])) == \
        ("LIMIT_MAKER", "t7-42", "0.08000")
    assert "timeInForce" not in by_id and "cancelOrderId" not in by_id
    with pytest.raises(ValueError, match="not above what filled"):
        amend_params(amend(qty=3000), BTC, "spot", OrderType.LIMIT, filled_qty=3000)


def test_a_futures_amend_modifies_the_same_order_to_its_new_total():
    params = amend_params(amend(qty=8, price=300011), BTC_PERP, "usdm", OrderType.POST_ONLY, filled_qty=3)
    assert [(k, str(v)) for k, v in params] == [
        ("symbol", "BTCUSDT"), ("origClientOrderId", "t7-42"), ("side", "BUY"), ("quantity", "0.008"),
        ("price", "30001.1")]
    for kind in (OrderType.MARKET, OrderType.IOC, OrderType.FOK):
        with pytest.raises(ValueError, match="never rests"):
            amend_params(amend(), BTC_PERP, "usdm", kind)


# -- round trips -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", ["hmac", "ed25519"])
def test_a_new_order_round_trip_on_one_connection(stub, key_type):
    creds = hmac_credentials() if key_type == "hmac" else ApiCredentials(ED_KEY, Ed25519Signer(ED_PEM), "test")
    rest = client(stub, creds)
    answer = rest.new_order(new_order(cid=1), BTC)
    (ack,) = order_reports(answer, BTC)
    assert (ack.strategy_id, ack.client_order_id, ack.status, ack.price, ack.qty) == (7, 1, OrderStatus.ACCEPTED,
                                                                                       3000012, 5000)
    (_, _, sent), = [r for r in stub.requests if r[0] == "POST"]
    assert (sent["type"], sent["timeInForce"], sent["price"], sent["quantity"]) == ("LIMIT", "GTC", "30000.12",
                                                                                   "0.05000")
    filled = order_reports(rest.new_order(new_order(cid=2, order_type=OrderType.MARKET), BTC), BTC)
    assert [(r.status, r.last_price, r.last_qty, r.fee, r.trade_id) for r in filled] == [
        (OrderStatus.FILLED, 3000050, 5000, 1_000_000, 77)]
    status = rest.order_status("BTCUSDT", 7, 1)
    assert venue_order(status, BTC).status == OrderStatus.ACCEPTED
    assert order_reports(rest.cancel_order("BTCUSDT", 7, 1), BTC)[0].status == OrderStatus.CANCELED
    assert rest.order_status("BTCUSDT", 7, 99) is None  # -2013: the venue never saw it
    assert rest.balances() == {"USDT": 10_075_000_000}
    assert stub.refusals == [] and stub.connections == 1  # every signed request passed, on one connection
    assert rest.limits.remaining()["REQUEST_WEIGHT/1M"] == 1200 - stub.weight  # the stub's last header


def test_a_futures_post_only_reduce_only_order(usdm_stub):
    rest = client(usdm_stub, market="usdm")
    answer = rest.new_order(new_order(cid=3, order_type=OrderType.POST_ONLY, reduce_only=1, price=300001,
                                      qty=2, instrument_id=2), BTC_PERP)
    (_, path, sent), = [r for r in usdm_stub.requests if r[0] == "POST"]
    assert path == "/fapi/v1/order"
    assert (sent["type"], sent["timeInForce"], sent["reduceOnly"], sent["price"], sent["quantity"],
            sent["newOrderRespType"]) == ("LIMIT", "GTX", "true", "30000.1", "0.002", "RESULT")
    assert order_reports(answer, BTC_PERP)[0].status == OrderStatus.ACCEPTED


def test_my_trades_pages_by_start_time_then_from_id(stub, monkeypatch):
    monkeypatch.setattr(rest_module, "TRADES_PAGE", 2)
    stub.trades = [{"id": str(100 + n), "time": 1_000 + n, "price": "1", "qty": "1"} for n in range(6)]
    trades = client(stub).my_trades("BTCUSDT", start_ms=1_001)
    assert [t["id"] for t in trades] == ["101", "102", "103", "104", "105"]
    asked = [p for m, path, p in stub.requests if path.endswith("/myTrades")]
    assert [("startTime" in p, p.get("fromId")) for p in asked] == [(True, None), (False, "103"), (False, "105")]


# -- clock, unknown results, rate limits -----------------------------------------------------------------
def test_a_stale_timestamp_refreshes_the_clock_and_sends_once_more(stub):
    rest = client(stub)
    before = rest.clock.refresh()  # server minus CLOCK_MONOTONIC
    stub.skew_ms = 30_000  # the venue's clock jumps 30 s ahead: our timestamps are outside recvWindow
    answer = rest.new_order(new_order(cid=5), BTC)
    assert answer["clientOrderId"] == "t7-5"
    assert stub.refusals == [-1021] and stub.count("POST") == 2 and list(stub.orders) == ["t7-5"]
    assert abs(rest.clock.offset_ms - before - 30_000) < 1_000


def test_a_second_stale_timestamp_is_a_reject_not_a_third_send(stub):
    rest = client(stub)
    rest.clock.refresh()
    stub.skew_ms = 30_000
    stub.time_lie_ms = -30_000  # /time keeps telling the old time, so the refresh cannot fix it
    with pytest.raises(OrderRejected) as err:
        rest.new_order(new_order(cid=6), BTC)
    assert err.value.decision.code == -1021 and err.value.client_order_id == "t7-6"
    assert stub.refusals == [-1021, -1021] and stub.count("POST") == 2 and stub.orders == {}


@pytest.mark.parametrize("fault", [
    ("executed_then_reply", 503, {"code": -1006, "msg": "An unexpected response was received from the message bus. "
                                                        "Execution status unknown."}),
    ("executed_then_reply", 502, "<html>Bad Gateway</html>"),
    ("executed_then_drop",),
    ("executed_then_hang",),
])
def test_an_order_whose_result_is_unknown_is_never_sent_again_and_is_found_by_its_id(stub, fault):
    rest = client(stub, timeout_s=0.5)
    rest.clock.refresh()
    stub.faults[("POST", "/api/v3/order")].append(fault)
    with pytest.raises(ResultUnknown) as err:
        rest.new_order(new_order(cid=9), BTC)
    assert err.value.client_order_id == "t7-9" and err.value.decision.action == Action.UNKNOWN_RESULT
    assert stub.count("POST") == 1
    stub.release.set()
    found = rest.order_status("BTCUSDT", 7, 9)  # how the adapter resolves it, on a new connection if need be
    assert venue_order(found, BTC).client_order_id == 9 and stub.count("POST") == 1


def test_a_keep_alive_connection_the_server_closed_is_replaced_before_an_order_goes(stub):
    rest = client(stub)
    stub.faults[("GET", "/api/v3/account")].append(("reply_then_close",))
    rest.account()
    stub.wait_closed(1)
    rest.new_order(new_order(cid=11), BTC)  # not a result-unknown: the dead socket was seen before sending
    assert stub.connections == 2 and stub.count("POST") == 1


def test_an_unreachable_venue_is_not_an_unknown_result():
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    url = f"http://127.0.0.1:{port_holder.getsockname()[1]}"
    try:
        rest = BinanceRest(url, hmac_credentials())
        with pytest.raises(VenueUnreachable, match="nothing was sent"):
            rest.server_time()
    finally:
        port_holder.close()


def test_a_429_backs_off_for_retry_after_without_sending(stub):
    clock = FakeClock()
    rest = client(stub, limits=RateLimits.from_exchange_info(SPOT_INFO, clock=clock))
    rest.clock.refresh()
    body = {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 1200 requests per minute."}
    stub.faults[("POST", "/api/v3/order")].append(("reply", 429, body, {"Retry-After": "7"}))
    with pytest.raises(RateLimited):
        rest.new_order(new_order(cid=12), BTC)
    assert rest.limits.backoff_until == clock.t + 7
    sent = len(stub.requests)
    with pytest.raises(RateLimited, match="not sent: backing off"):
        rest.new_order(new_order(cid=12), BTC)
    with pytest.raises(RateLimited):
        rest.order_status("BTCUSDT", 7, 12)
    assert len(stub.requests) == sent
    clock.t += 7
    assert rest.new_order(new_order(cid=12), BTC)["clientOrderId"] == "t7-12"


def test_a_418_halts_order_entry_and_says_so_once(stub, caplog):
    clock = FakeClock()
    rest = client(stub, limits=RateLimits.from_exchange_info(SPOT_INFO, clock=clock))
    rest.clock.refresh()
    body = {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned until 1700000120000."}
    stub.faults[("POST", "/api/v3/order")].append(("reply", 418, body, {"Retry-After": "120"}))
    with caplog.at_level(logging.ERROR, logger="ttquant.venues.binance"):
        with pytest.raises(Halted):
            rest.new_order(new_order(cid=13), BTC)
        sent = len(stub.requests)
        for _ in range(3):
            with pytest.raises(Halted):
                rest.new_order(new_order(cid=14), BTC)
        clock.t += 1_000  # the ban is over; order entry waits for an operator all the same
        with pytest.raises(Halted):
            rest.new_order(new_order(cid=14), BTC)
    assert len(stub.requests) == sent and stub.orders == {}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["order entry halted"]


def test_a_wrong_secret_halts_rather_than_retries(stub):
    rest = client(stub, hmac_credentials("not" + SECRET))
    with pytest.raises(Halted) as err:
        rest.new_order(new_order(cid=15), BTC)
    assert err.value.decision.code == -1022 and stub.refusals == [-1022] and stub.count("POST") == 1
    assert rest.limits.halted is not None


def test_the_secret_is_in_no_exception_log_or_repr(stub, caplog):
    caplog.set_level(logging.DEBUG)
    rest = client(stub, timeout_s=0.5)
    rest.clock.refresh()
    texts = [repr(rest), str(rest)]
    for fault in [("executed_then_reply", 503, {"code": -1007, "msg": "Timeout waiting for response"}),
                  ("executed_then_drop",), ("executed_then_hang",),
                  ("reply", 400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, {})]:
        stub.faults[("POST", "/api/v3/order")].append(fault)
        with pytest.raises(Exception) as err:
            rest.new_order(new_order(cid=20 + len(texts)), BTC)
        texts.append(exception_text(err.value))
    wrong = client(stub, hmac_credentials("bad" + SECRET))
    with pytest.raises(Halted) as err:
        wrong.account()
    texts.append(exception_text(err.value))
    stub.faults[("POST", "/api/v3/order")].append(("reply", 418, {"code": -1003, "msg": "banned"}, {}))
    with pytest.raises(Halted) as err:
        rest.new_order(new_order(cid=30), BTC)
    texts.append(exception_text(err.value))
    with pytest.raises(TypeError):
        __import__("pickle").dumps(rest)
    assert len(texts) == 8 and all("POST /api/v3/order" in t for t in texts[2:6])
    assert_no_secret(*texts, caplog.text)
