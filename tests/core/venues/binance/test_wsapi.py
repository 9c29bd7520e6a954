"""WsApiClient (core/venues/binance/wsapi.py) against a scripted fake of Binance's WebSocket API
(conftest.py's fake_wsapi): signing (HMAC per request, Ed25519 by session.logon), answers matched by id, rate
limits, 429 / 418, -1021, a connection dropped or silent after a request (ResultUnknown, never resent),
reconnects with the user data stream subscribed again, pings answered."""
import threading
import time

import pytest

from ttquant.core.sim.binance_auth import ApiKeys
from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.rest import Halted, OrderRejected, RateLimited, ResultUnknown, VenueUnreachable
from ttquant.core.venues.binance.server_time import ClockOffset
from ttquant.core.venues.binance.signing import HmacSigner
from ttquant.core.venues.binance.wsapi import WsApiClient

from ttq_testing import new_ed25519_signer, wait_for

KEY, SECRET, ED_KEY = "wsKey1", "wsSecret1", "wsEdKey1"
ED_SIGNER = new_ed25519_signer()


@pytest.fixture
def fake(fake_wsapi):
    keys = ApiKeys()
    keys.add_hmac(KEY, SECRET)
    keys.add_ed25519(ED_KEY, ED_SIGNER.public_key_pem())
    return fake_wsapi(keys)


class Recorder:
    """The owner's callbacks, as they came, with the thread each ran on."""

    def __init__(self):
        self.events, self.seen = [], []

    def on_event(self, event):
        self.events.append(event)

    def on_connected(self):
        self.seen.append(("connected", threading.current_thread().name))

    def on_disconnected(self, reason):
        self.seen.append(("disconnected", reason))


@pytest.fixture
def make_client(fake):
    made = []

    def make(ed25519=False, user_data=False, **kw):
        rec = Recorder()
        creds = ApiCredentials(ED_KEY, ED_SIGNER, "test") if ed25519 else \
            ApiCredentials(KEY, HmacSigner(SECRET), "test")
        clock = ClockOffset(lambda: int(time.time() * 1000))       # measured over the WebSocket API's `time`
        client = WsApiClient(fake.url, creds, clock, RateLimits(()), on_event=rec.on_event,
                             on_connected=rec.on_connected, on_disconnected=rec.on_disconnected,
                             backoff_initial_s=0.02, backoff_max_s=0.1, **kw)
        if user_data:
            client.subscribe_user_data()
        made.append(client.start())
        assert client.wait_connected(10)
        return client, rec
    yield make
    for client in made:
        client.close()


ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
         "price": "20000.00", "newClientOrderId": "t1-1", "newOrderRespType": "FULL"}


def test_hmac_requests_are_signed_each_and_answers_matched_by_id(fake, make_client):
    client, _ = make_client()
    assert fake.methods() == ["time", "time", "time"]     # the clock measured on connect, 3 samples
    placed = client.call("order.place", ORDER)
    status = client.call("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "t1-1"})
    canceled = client.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "t1-1"})
    assert (placed["clientOrderId"], placed["status"]) == ("t1-1", "NEW")
    assert status["orderId"] == placed["orderId"] and canceled["status"] == "CANCELED"
    sent = fake.requests[3]
    assert sent["method"] == "order.place" and sent["params"]["apiKey"] == KEY
    assert {"timestamp", "signature", "recvWindow"} <= set(sent["params"])    # the fake's checker passed it
    assert len({r["id"] for r in fake.requests}) == len(fake.requests)
    # the answers' rateLimits are what RateLimits now holds (and the limits they name are learnt)
    assert client.limits.remaining()["REQUEST_WEIGHT/1M"] == 6000 - fake.weight + 0
    assert "ORDERS/10S" in client.limits.remaining()
    with pytest.raises(OrderRejected) as err:
        client.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "t1-1"})
    assert err.value.decision.code == -2011 and err.value.client_order_id == "t1-1"


def test_an_ed25519_key_logs_the_session_on_and_requests_carry_only_a_timestamp(fake, make_client):
    client, _ = make_client(ed25519=True, user_data=True)
    assert fake.methods()[3:] == ["session.logon", "userDataStream.subscribe"]
    client.call("order.place", ORDER)
    sent = fake.requests[-1]["params"]
    assert "timestamp" in sent and "apiKey" not in sent and "signature" not in sent
    assert client.subscription_id == 0


def test_a_bad_signature_is_refused_and_halts_order_entry(fake):
    creds = ApiCredentials(KEY, HmacSigner("notTheSecret"), "test")
    limits = RateLimits(())
    client = WsApiClient(fake.url, creds, ClockOffset(lambda: int(time.time() * 1000)), limits).start()
    try:
        assert client.wait_connected(10)
        with pytest.raises(Halted):
            client.call("order.place", ORDER)
        assert "-1022" in limits.halted
        n = len(fake.requests)
        with pytest.raises(Halted):       # refused here, not sent
            client.call("order.place", dict(ORDER, newClientOrderId="t1-2"))
        assert len(fake.requests) == n
    finally:
        client.close()


def test_submit_never_waits_and_the_callback_runs_on_the_io_thread(fake, make_client):
    client, _ = make_client()
    fake.script["order.place"] = [lambda req: (time.sleep(0.3) or 200, {"orderId": 1}, {})]
    got = []
    t0 = time.perf_counter()
    client.submit("order.place", ORDER, lambda *a: got.append((a, threading.current_thread().name)))
    took = time.perf_counter() - t0
    assert not got
    wait_for(lambda: got, timeout=5)
    assert took < 0.1 and got[0] == ((200, {"orderId": 1}, None), "binance-wsapi")


def test_a_dropped_connection_fails_the_request_as_unknown_and_never_sends_it_again(fake, make_client):
    client, rec = make_client(user_data=True)
    fake.script["order.place"] = ["drop"]
    with pytest.raises(ResultUnknown) as err:
        client.call("order.place", ORDER)
    assert err.value.client_order_id == "t1-1" and "dropped" in str(err.value)
    wait_for(lambda: rec.seen.count(("connected", "binance-wsapi")) == 2, timeout=10, what="reconnected")
    assert [s[0] for s in rec.seen] == ["connected", "disconnected", "connected"]
    assert fake.methods().count("order.place") == 1
    assert fake.methods().count("userDataStream.subscribe.signature") == 2     # subscribed again
    assert client.counts["connects"] == 2 and client.counts["lost_answers"] == 1
    assert client.call("order.place", dict(ORDER, newClientOrderId="t1-2"))["status"] == "NEW"


def test_no_answer_in_time_is_unknown_and_a_late_answer_is_only_counted(fake, make_client):
    client, _ = make_client()
    fake.script["order.place"] = [lambda req: (time.sleep(0.5) or 200, {"orderId": 1}, {})]
    with pytest.raises(ResultUnknown):
        client.call("order.place", ORDER, timeout_s=0.1)
    wait_for(lambda: client.counts["unmatched_answers"] == 1, timeout=5)
    assert client.counts["timeouts"] == 1 and client.connected


def test_a_429_backs_off_and_nothing_is_sent_meanwhile(fake, make_client):
    client, _ = make_client()
    until = fake.now_ms() + 30_000
    fake.script["order.place"] = [lambda req: (429, {"code": -1003, "msg": "Too much request weight used; current "
                                                     "limit is 6000 request weight per 1 MINUTE.",
                                                     "data": {"retryAfter": until}}, {})]
    with pytest.raises(RateLimited):
        client.call("order.place", ORDER)
    wait = client.limits.backoff_until - client.limits.clock()
    assert 25 < wait <= 31, wait
    n = len(fake.requests)
    with pytest.raises(RateLimited):
        client.call("order.place", dict(ORDER, newClientOrderId="t1-2"))
    assert len(fake.requests) == n and client.limits.halted is None


def test_a_418_halts_order_entry(fake, make_client):
    client, _ = make_client()
    fake.script["order.place"] = [lambda req: (418, {"code": -1003, "msg": "Way too much request weight used; IP "
                                                     "banned until 1659146400000."}, {})]
    with pytest.raises(Halted):
        client.call("order.place", ORDER)
    assert client.limits.halted is not None and "418" in client.limits.halted
    n = len(fake.requests)
    got = []
    client.submit("order.place", dict(ORDER, newClientOrderId="t1-2"), lambda *a: got.append(a))
    wait_for(lambda: got, timeout=5)
    assert isinstance(got[0][2], Halted) and len(fake.requests) == n


def test_a_timestamp_refused_measures_the_clock_again_and_sends_once_more(fake, make_client):
    client, _ = make_client()
    fake.ahead_ms = 8000                    # the venue's clock jumps; our offset is now stale
    assert client.call("order.place", ORDER)["status"] == "NEW"
    assert fake.methods()[3:] == ["order.place", "time", "time", "time", "order.place"]
    fake.script["order.place"] = [lambda req: (400, {"code": -1021, "msg": "Timestamp for this request is outside "
                                                     "of the recvWindow."}, {})] * 2
    with pytest.raises(OrderRejected) as err:    # refused again after the resync: once only
        client.call("order.place", dict(ORDER, newClientOrderId="t1-2"))
    assert err.value.decision.code == -1021 and fake.methods().count("order.place") == 4


def test_user_data_events_go_to_on_event_and_a_terminated_stream_is_subscribed_again(fake, make_client):
    client, rec = make_client(user_data=True)
    event = {"e": "outboundAccountPosition", "E": 1, "u": 1, "B": [{"a": "BTC", "f": "1.0", "l": "0.0"}]}
    fake.push_event(event)
    wait_for(lambda: rec.events, timeout=5)
    assert rec.events == [event]
    fake.push_event({"e": "eventStreamTerminated", "E": 2})
    wait_for(lambda: len(rec.seen) == 2, timeout=5, what="on_connected again")
    assert fake.methods().count("userDataStream.subscribe.signature") == 2 and rec.events == [event]
    assert client.subscription_id == 1


def test_a_server_shutdown_reconnects_once_the_answers_are_in(fake, make_client):
    client, rec = make_client(user_data=True)
    fake.script["order.place"] = [lambda req: (fake.push_event({"e": "serverShutdown", "E": 1}) or 200,
                                               {"orderId": 7}, {})]
    got = []
    client.submit("order.place", ORDER, lambda *a: got.append(a))
    wait_for(lambda: len(rec.seen) == 3, timeout=10, what="a new connection")
    assert got == [(200, {"orderId": 7}, None)]          # answered before the connection was let go
    assert rec.seen[1] == ("disconnected", "the venue is shutting down (serverShutdown)")
    assert client.counts["connects"] == 2 and client.counts["lost_answers"] == 0


def test_pings_are_answered_and_junk_is_counted_not_fatal(fake, make_client):
    client, _ = make_client()
    fake.ping_all()
    wait_for(lambda: fake.pongs == 1, timeout=5, what="a pong")
    fake.send_raw(b"{not json")
    fake.send_raw(b'{"id": null, "status": 400, "error": {"code": -1000, "msg": "x"}}')
    wait_for(lambda: client.counts["bad_messages"] == 1 and client.counts["unmatched_answers"] == 1, timeout=5)
    assert client.call("time", signed=False)["serverTime"] > 0


def test_a_client_that_is_not_connected_sends_nothing(fake):
    creds = ApiCredentials(KEY, HmacSigner(SECRET), "test")
    client = WsApiClient("ws://127.0.0.1:9/ws-api/v3", creds, ClockOffset(lambda: 0), RateLimits(()),
                         backoff_initial_s=0.01, backoff_max_s=0.05)
    with pytest.raises(VenueUnreachable):
        client.call("order.place", ORDER)          # not started
    client.start()
    try:
        with pytest.raises(VenueUnreachable):
            client.call("order.place", ORDER)
        wait_for(lambda: client.counts["connect_failures"] >= 2, timeout=5)
        assert not client.connected
    finally:
        client.close()
    assert "wsSecret1" not in repr(client) and SECRET not in str(client)
