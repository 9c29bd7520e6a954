"""Binance error bodies and HTTP statuses -> reject, resync-and-retry, unknown result, back off or halt.

Real bodies from the sample data's binance/rest_error_bodies.jsonl (data/, or $TTQ_SAMPLE_DATA),
then the documented tables (spot errors.md, USDS-M futures error-code page, HTTP return codes,
WebSocket API response format)."""
import json

import pytest

from ttquant.core.records import RejectCode as R
from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.binance.errors import Action as A
from ttquant.core.venues.binance.errors import classify, classify_batch, parse_retry_after

BODIES = sample_data_dir() / "binance" / "rest_error_bodies.jsonl"


def _rows():
    return [json.loads(line) for line in BODIES.read_text().splitlines() if line.strip()]


def _market(context):
    return "usdm" if "USD-M" in context else "spot"


def test_the_recorded_bodies_are_the_ones_these_expectations_were_written_for():
    assert [(r["http"], r["body"]["code"] if isinstance(r["body"], dict) else "batch") for r in _rows()] == [
        (400, -1013), (400, -1021), (None, -2010), (None, -2019), (400, -4164), (400, -4003), (200, "batch")]


# (action, reject code) per line of rest_error_bodies.jsonl, in file order; the batch line is tested apart
RECORDED = [
    (A.REJECT, R.BAD_QTY),              # -1013 Filter failure: LOT_SIZE
    (A.RETRY_AFTER_RESYNC, R.VENUE),    # -1021 1000ms ahead of the server's time
    (A.REJECT, R.INSUFFICIENT_FUNDS),   # -2010 Account has insufficient balance
    (A.REJECT, R.INSUFFICIENT_FUNDS),   # -2019 Margin is insufficient (USD-M)
    (A.REJECT, R.BAD_QTY),              # -4164 notional below 5 (USD-M)
    (A.REJECT, R.BAD_QTY),              # -4003 quantity <= 0 (USD-M)
]


@pytest.mark.parametrize("line", range(len(RECORDED)))
def test_each_recorded_body(line):
    row = _rows()[line]
    decision = classify(row["http"], row["body"], _market(row["context"]))
    assert (decision.action, decision.reject_code) == RECORDED[line]
    assert (decision.code, decision.msg) == (row["body"]["code"], row["body"]["msg"])
    assert decision.retry_after_s is None


def test_each_recorded_body_as_raw_bytes_gives_the_same_decision():
    for row, expected in zip(_rows(), RECORDED):
        raw = json.dumps(row["body"]).encode()
        decision = classify(row["http"], raw, _market(row["context"]))
        assert (decision.action, decision.reject_code) == expected


def test_recorded_batch_answer_one_decision_per_order():
    row = _rows()[6]
    decisions = classify_batch(row["http"], row["body"], "usdm")
    assert len(decisions) == 2
    assert (decisions[0].action, decisions[0].reject_code, decisions[0].code) == (A.REJECT, R.BAD_QTY, -4164)
    assert decisions[1] is None  # the second order was accepted (status NEW)
    assert classify_batch(200, json.dumps(row["body"]).encode(), "usdm")[0].reject_code == R.BAD_QTY
    with pytest.raises(TypeError):
        classify(row["http"], row["body"], "usdm")


@pytest.mark.parametrize("filter_name, expected", [
    ("PRICE_FILTER", R.BAD_PRICE), ("PERCENT_PRICE", R.FAT_FINGER), ("PERCENT_PRICE_BY_SIDE", R.FAT_FINGER),
    ("LOT_SIZE", R.BAD_QTY), ("MARKET_LOT_SIZE", R.BAD_QTY), ("MIN_NOTIONAL", R.BAD_QTY), ("NOTIONAL", R.BAD_QTY),
    ("ICEBERG_PARTS", R.BAD_QTY), ("MAX_POSITION", R.POSITION_LIMIT), ("MAX_NUM_ORDERS", R.MAX_OPEN_ORDERS),
    ("MAX_NUM_ALGO_ORDERS", R.MAX_OPEN_ORDERS), ("EXCHANGE_MAX_NUM_ORDERS", R.MAX_OPEN_ORDERS),
    ("TRAILING_DELTA", R.BAD_PRICE), ("SOME_NEW_FILTER", R.VENUE),
])
def test_filter_failures_by_name(filter_name, expected):
    decision = classify(400, {"code": -1013, "msg": f"Filter failure: {filter_name}"}, "spot")
    assert (decision.action, decision.reject_code) == (A.REJECT, expected)


def test_the_whole_filter_name_is_matched():
    # MAX_NUM_ORDER_AMENDS must not be read as MAX_NUM_ORDERS
    assert classify(400, {"code": -1013, "msg": "Filter failure: MAX_NUM_ORDER_AMENDS"}, "spot").reject_code == R.VENUE
    assert classify(400, {"code": -1013, "msg": "Filter failure: MAX_NUM_ORDERS"}, "spot").reject_code \
        == R.MAX_OPEN_ORDERS


@pytest.mark.parametrize("code, msg, expected", [
    (-2010, "Account has insufficient balance for requested action.", R.INSUFFICIENT_FUNDS),
    (-2010, "Order would immediately match and take.", R.BAD_PRICE),  # LIMIT_MAKER that would cross
    (-2010, "Duplicate order sent.", R.DUPLICATE_ORDER_ID),
    (-2010, "Market is closed.", R.VENUE),
    (-2010, "Order would trigger immediately.", R.BAD_PRICE),
    (-2010, "Price * QTY is zero or less.", R.BAD_QTY),
    (-2010, "Market orders are not supported for this symbol.", R.BAD_FIELD),
    (-2010, "Quote order qty market orders are not support for this symbol.", R.BAD_FIELD),
    (-2010, "Unsupported order combination", R.BAD_FIELD),
    (-2010, "Filter failure: PRICE_FILTER", R.BAD_PRICE),
    (-2010, "NEW_ORDER_REJECTED", R.VENUE),
    (-2011, "Unknown order sent.", R.UNKNOWN_ORDER),
    (-2011, "CANCEL_REJECTED", R.UNKNOWN_ORDER),
    (-2011, "Order was not canceled due to cancel restrictions.", R.VENUE),
    (-2013, "Order does not exist.", R.UNKNOWN_ORDER),
    (-2038, "Order amend (quantity increase) is not supported.", R.BAD_QTY),
    (-1010, "Unknown order sent.", R.UNKNOWN_ORDER),
    (-1121, "Invalid symbol.", R.UNKNOWN_INSTRUMENT),
    (-1111, "Parameter 'price' has too much precision.", R.BAD_PRICE),
    (-1111, "Parameter 'quantity' has too much precision.", R.BAD_QTY),
    (-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.", R.BAD_FIELD),
    (-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
     R.BAD_FIELD),
    (-1116, "Invalid orderType.", R.BAD_FIELD),
    (-2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived.",
     R.UNKNOWN_ORDER),
])
def test_spot_rejects(code, msg, expected):
    decision = classify(400, {"code": code, "msg": msg}, "spot")
    assert (decision.action, decision.reject_code, decision.code) == (A.REJECT, expected, code)


@pytest.mark.parametrize("code, msg, expected", [
    (-2022, "ReduceOnly Order is rejected.", R.REDUCE_ONLY),
    (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.", R.BAD_PRICE),
    (-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).", R.BAD_QTY),
    (-2019, "Margin is insufficient.", R.INSUFFICIENT_FUNDS),
    (-2021, "Order would immediately trigger.", R.BAD_PRICE),
    (-2026, "This OrderType is not supported when reduceOnly.", R.REDUCE_ONLY),
    (-4116, "clientOrderId is duplicated", R.DUPLICATE_ORDER_ID),
    (-4014, "Price not increased by tick size.", R.BAD_PRICE),
    (-4023, "Qty not increased by step size.", R.BAD_QTY),
    (-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit", R.FAT_FINGER),
    (-2011, "Unknown order sent.", R.UNKNOWN_ORDER),
    (-2025, "Reach max open order limit.", R.MAX_OPEN_ORDERS),
    (-5021, "Due to the order could not be filled immediately, the FOK order has been rejected.", R.VENUE),
])
def test_usdm_rejects(code, msg, expected):
    decision = classify(400, {"code": code, "msg": msg}, "usdm")
    assert (decision.action, decision.reject_code) == (A.REJECT, expected)


def test_codes_that_mean_different_things_on_spot_and_futures():
    # -2022: futures ReduceOnly reject; spot cancel-replace failed on both legs (decided by the new order's leg)
    spot_2022 = {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "FAILURE",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
        "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}}
    assert classify(400, spot_2022, "spot").reject_code == R.INSUFFICIENT_FUNDS
    assert classify(400, spot_2022, "usdm").reject_code == R.REDUCE_ONLY
    # -2021: spot cancel-replace partially failed (one leg happened) vs futures "would immediately trigger"
    spot_2021 = {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": {
        "cancelResult": "SUCCESS", "newOrderResult": "FAILURE"}}
    assert (classify(409, spot_2021, "spot").action, classify(409, spot_2021, "spot").reject_code) \
        == (A.UNKNOWN_RESULT, R.NONE)
    assert classify(400, {"code": -2021, "msg": "Order would immediately trigger."}, "usdm").action == A.REJECT


@pytest.mark.parametrize("market", ["spot", "usdm"])
@pytest.mark.parametrize("code, msg, action, reject_code", [
    (-1021, "Timestamp for this request is outside of the recvWindow.", A.RETRY_AFTER_RESYNC, R.VENUE),
    (-1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
     A.UNKNOWN_RESULT, R.NONE),
    (-1006, "An unexpected response was received from the message bus. Execution status unknown.",
     A.UNKNOWN_RESULT, R.NONE),
    (-1000, "An unknown error occurred while processing the request.", A.UNKNOWN_RESULT, R.NONE),
    (-1022, "Signature for this request is not valid.", A.HALT, R.VENUE),
    (-2014, "API-key format invalid.", A.HALT, R.VENUE),
    (-2015, "Invalid API-key, IP, or permissions for action.", A.HALT, R.VENUE),
    (-1002, "You are not authorized to execute this request.", A.HALT, R.VENUE),
    (-1015, "Too many new orders; current limit is 50 orders per TEN_SECONDS.", A.BACK_OFF, R.RATE_LIMIT),
])
def test_documented_decisions_on_both_markets(market, code, msg, action, reject_code):
    decision = classify(400 if action != A.HALT else 401, {"code": code, "msg": msg}, market)
    assert (decision.action, decision.reject_code) == (action, reject_code)


def test_throttled_and_matching_engine_recv_window():
    busy = classify(400, {"code": -1008, "msg": "Request throttled by system-level protection."}, "usdm")
    assert (busy.action, busy.reject_code) == (A.BACK_OFF, R.VENUE_UNAVAILABLE)
    late = classify(400, {"code": -5028, "msg": "Timestamp for this request is outside of the ME recvWindow."}, "usdm")
    assert late.action == A.RETRY_AFTER_RESYNC


def test_account_level_refusals_halt():
    for msg in ("This action is disabled on this account.", "This account may not place or cancel orders.",
                "WebSocket API trading is not enabled."):
        assert classify(400, {"code": -2010, "msg": msg}, "spot").action == A.HALT
    assert classify(400, {"code": -4061, "msg": "Order's position side does not match user's setting."},
                    "usdm").action == A.HALT


def test_rate_limit_429_with_retry_after():
    body = {"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}
    decision = classify(429, body, "spot", retry_after="17")
    assert (decision.action, decision.reject_code, decision.retry_after_s) == (A.BACK_OFF, R.RATE_LIMIT, 17.0)


def test_ip_ban_418_halts_with_the_ban_length():
    body = {"code": -1003, "msg": "Way too much request weight used; IP banned until 1659146400000. "
                                  "Please use WebSocket Streams for live updates to avoid bans."}
    decision = classify(418, body, "spot", retry_after=b"3600")
    assert (decision.action, decision.reject_code, decision.retry_after_s) == (A.HALT, R.VENUE_UNAVAILABLE, 3600.0)
    # the ban message alone (no 418 seen, e.g. through a proxy) also halts
    assert classify(400, body, "spot").action == A.HALT


def test_websocket_api_ban_reads_status_and_retry_after_from_the_envelope():
    # the documented WebSocket API 418 example: retryAfter is an epoch, measured against serverTime
    response = {"id": "fc93a61a-a192-4cf4-bb2a-a8f0f0c51e06", "status": 418, "error": {
        "code": -1003,
        "msg": "Way too much request weight used; IP banned until 1659146400000. "
               "Please use WebSocket Streams for live updates to avoid bans.",
        "data": {"serverTime": 1659142907531, "retryAfter": 1659146400000}}}
    decision = classify(None, response, "spot")
    assert (decision.action, decision.http_status, decision.code) == (A.HALT, 418, -1003)
    assert decision.retry_after_s == pytest.approx(3492.469)


def test_websocket_api_reject_envelope():
    response = {"id": "e2a85d9f", "status": 400,
                "error": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}
    decision = classify(None, response, "spot")
    assert (decision.action, decision.reject_code, decision.http_status) == (A.REJECT, R.INSUFFICIENT_FUNDS, 400)


@pytest.mark.parametrize("status, body, action, reject_code", [
    (None, None, A.UNKNOWN_RESULT, R.NONE),                 # connection dropped after sending
    (500, None, A.UNKNOWN_RESULT, R.NONE),
    (502, b"<html>Bad Gateway</html>", A.UNKNOWN_RESULT, R.NONE),
    (503, {"code": -1008, "msg": "Server is currently overloaded with other requests."}, A.UNKNOWN_RESULT, R.NONE),
    (504, {"code": -2010, "msg": "Account has insufficient balance for requested action."}, A.UNKNOWN_RESULT,
     R.NONE),                                               # a 5XX is unknown whatever the body says
    (429, None, A.BACK_OFF, R.RATE_LIMIT),
    (418, None, A.HALT, R.VENUE_UNAVAILABLE),
    (403, b"<html>403 Forbidden</html>", A.HALT, R.VENUE_UNAVAILABLE),  # the WAF
    (409, None, A.UNKNOWN_RESULT, R.NONE),                  # cancelReplace partially succeeded
    (401, None, A.HALT, R.VENUE),
    (404, None, A.REJECT, R.VENUE),
    (400, b"not json", A.REJECT, R.VENUE),
])
def test_http_status_only(status, body, action, reject_code):
    decision = classify(status, body, "usdm")
    assert (decision.action, decision.reject_code) == (action, reject_code)


def test_a_429_decides_back_off_whatever_the_code():
    decision = classify(429, {"code": -2010, "msg": "NEW_ORDER_REJECTED"}, "spot", retry_after="5")
    assert (decision.action, decision.reject_code, decision.retry_after_s) == (A.BACK_OFF, R.RATE_LIMIT, 5.0)


def test_unknown_code_rejects_with_venue_when_answered_and_is_unknown_on_5xx():
    body = {"code": -9999, "msg": "Something new."}
    assert (classify(400, body, "spot").action, classify(400, body, "spot").reject_code) == (A.REJECT, R.VENUE)
    assert classify(None, body, "usdm").action == A.REJECT
    assert classify(500, body, "usdm").action == A.UNKNOWN_RESULT


def test_spot_only_and_futures_only_codes_are_unknown_on_the_other_market():
    assert classify(400, {"code": -5022, "msg": "x"}, "spot").reject_code == R.VENUE
    assert classify(400, {"code": -2039, "msg": "Client order ID is not correct for this order ID."},
                    "spot").reject_code == R.UNKNOWN_ORDER
    assert classify(400, {"code": -2039, "msg": "x"}, "usdm").reject_code == R.VENUE


@pytest.mark.parametrize("value, expected", [
    ("17", 17.0), (b"120", 120.0), (" 3 ", 3.0), ("0", 0.0), (None, None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("-5", None), ("nan", None), ("", None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_is_kept_only_for_waits():
    decision = classify(400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, "spot", retry_after="10")
    assert decision.retry_after_s is None
    assert classify(429, None, "spot", retry_after="10").retry_after_s == 10.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        classify(400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, "coinm")
    with pytest.raises(ValueError):
        classify(200, {"orderId": 1, "status": "NEW"}, "spot")  # a success is not an error to classify


def test_decisions_are_frozen():
    decision = classify(400, {"code": -2013, "msg": "Order does not exist."}, "spot")
    with pytest.raises(AttributeError):
        decision.action = A.HALT
