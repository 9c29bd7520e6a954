"""The simulated venue's Binance USDT-M futures order entry: signed REST `/fapi`, listen keys and the user
data stream, answered in Binance's shapes (https://developers.binance.com/docs/derivatives/usds-margined-futures).

    POST   /fapi/v1/order        LIMIT (timeInForce GTC / IOC / FOK / GTX), MARKET; reduceOnly; newClientOrderId;
                                 newOrderRespType ACK (default: the order as accepted) / RESULT (as it stands after
                                 matching). A GTX that would take is 400 -5022 and no order, a FOK that cannot fill
                                 whole is 400 -5021 and no order (both "not recorded in the order history"), a
                                 reduce-only order that would open or grow the position (or outgrow it) -2022
    PUT    /fapi/v1/order        modify a resting LIMIT order: orderId | origClientOrderId, side, quantity, price.
                                 The same price and quantity -5027; a filter failure leaves the order as it was; a
                                 quantity at or below what has filled, or a GTX moved to where it would take, cancels it
    DELETE /fapi/v1/order        unknown -> -2011 "Unknown order sent."
    GET    /fapi/v1/order        unknown -> -2013 "Order does not exist."
    GET    /fapi/v1/openOrders   [symbol];   DELETE /fapi/v1/allOpenOrders   symbol
    GET    /fapi/v2/account, /fapi/v2/balance, /fapi/v2/positionRisk [symbol], /fapi/v1/userTrades symbol [orderId]
           [startTime] [endTime] [fromId] [limit], /fapi/v1/time (not signed)
    POST / PUT / DELETE /fapi/v1/listenKey    the API key header only: POST makes the account's key (or returns
                                 the live one and extends it), PUT extends it (none live: 400 -1125), DELETE ends it
The same handlers answer the USDT-M WebSocket API (core/sim/binance_wsapi.py, `/ws-fapi/v1`): order.place /
modify / cancel / status, account.*, and userDataStream.start / ping / stop for the listen key
(`listen_key_request`).

One account, one-way position mode (positionSide BOTH), cross margin, a wallet in USDT (FuturesWallet): a fill
moves the symbol's position (average entry price while it grows, realized PnL against that entry while it
shrinks, the entry at the fill's price when it flips) and the wallet by the realized PnL and the fee (maker /
taker rate of the notional, in USDT). Every new order must fit the available balance at the venue's
leverage (wallet + unrealized PnL - initial margin of positions and open orders; else -2019). The mark price is
the mid of the venue's book.

The shared machinery is core/sim/binance_orders.BinanceOrderEntry: keys and signatures (check_signed: -2014,
-2015, -1102, -1021, -1022), the venue's one weight and order counter and its ban (VenueGate: 429 / 418, the
order faults order_drop / order_delay / order_5xx / clock_skew / ban apply to /fapi as to /api/v3), the
filters (core/sim/binance_filters with the USDM codes -4013 / -4014 / -4004 / -4023 / -4164 ...), the matcher
against the venue's book (GET /fapi/v1/depth's), the market turn that fills resting orders as the book moves,
and the record (GET /_sim/binance/orders: these orders and trades with "market": "usdm").

User data (FuturesUserStreams): ws://127.0.0.1:<main port>/ws/<listenKey>. Every change of an order, whatever
caused it, is an ORDER_TRADE_UPDATE (x NEW / TRADE / CANCELED / EXPIRED / AMENDMENT; a TRADE's "t" is its id in
userTrades, "rp" its realized PnL), in the order the venue applied them, then ACCOUNT_UPDATE (m ORDER) with the
wallet and the positions of the symbols that traded. A listen key lives --listen-key-ttl seconds (Binance: 60
minutes) from its last POST / PUT; when it expires (or the listen_key_expire fault expires it now) its streams
get {"e": "listenKeyExpired", "E": "<ms>", "listenKey": ...} and are closed, and PUT answers -1125. DELETE
closes its streams without that event. A stream opened with a key that is not live is refused (HTTP 400).

Not here yet: hedge mode, isolated margin, leverage / margin type changes, liquidation, funding, conditional
(STOP / TAKE_PROFIT / TRAILING) and GTD orders, priceMatch, batch orders, the 1-minute order count (orders
count in the venue's 10 s / 1 day counters), a reduce-only order re-checked
when the position changes under it, and a modify that moves a price across the book filling as a taker (it
fills at its own price as the book's next move would fill it).
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal

import orjson
from picows import WSListener, WSMsgType

from ttquant.core.instruments import from_raw
from ttquant.core.records import Liquidity, Order, OrderAction, OrderStatus, OrderType, Side
from ttquant.core.sim.binance_auth import ApiKeys
from ttquant.core.sim.binance_filters import USDM, check_new_order
from ttquant.core.sim.binance_orders import (
    _DONE,
    _ID_CHARS,
    _STATUS,
    STRATEGY,
    Answer,
    BinanceOrderEntry,
    RateLimits,
    VenueGate,
    _mandatory,
    _not_required,
    _OrderInfo,
    _Refused,
)
from ttquant.core.sim.matching import ACCOUNT_PRECISION, FillModel

__all__ = ["BinanceFuturesOrders", "FuturesWallet", "FuturesUserStreams", "LISTEN_KEY_TTL_S", "FUTURES_FAULTS"]

log = logging.getLogger("ttquant.venue_sim.futures")
LISTEN_KEY_TTL_S = 3600.0           # Binance: a listen key lives 60 minutes from its last POST / PUT
LEVERAGE = 20                       # the account's leverage on every symbol (Binance's default)
MARGIN_ASSET = "USDT"
FIRST_ORDER_ID = 4_000_000_001      # Binance's USDT-M orderIds are in the billions
FUTURES_FAULTS = ("listen_key_expire",)
_EIGHT = Decimal("1e-8")
# request weight on the IP limit (USDT-M REST docs: a new order 0, a modify 1; both count on the order limits too)
WEIGHTS = {("POST", "v1/order"): 0, ("PUT", "v1/order"): 1, ("DELETE", "v1/order"): 1, ("GET", "v1/order"): 1,
           ("GET", "v1/openOrders"): 1, ("DELETE", "v1/allOpenOrders"): 1, ("GET", "v2/account"): 5,
           ("GET", "v2/balance"): 5, ("GET", "v2/positionRisk"): 5, ("GET", "v1/userTrades"): 5,
           ("GET", "v1/time"): 1, ("GET", "v1/exchangeInfo"): 1, ("POST", "v1/listenKey"): 1,
           ("PUT", "v1/listenKey"): 1, ("DELETE", "v1/listenKey"): 1}
_SIGNED = frozenset({("POST", "v1/order"), ("PUT", "v1/order"), ("DELETE", "v1/order"), ("GET", "v1/order"),
                     ("GET", "v1/openOrders"), ("DELETE", "v1/allOpenOrders"), ("GET", "v2/account"),
                     ("GET", "v2/balance"), ("GET", "v2/positionRisk"), ("GET", "v1/userTrades")})
_TIFS = ("GTC", "IOC", "FOK", "GTX")
_CONDITIONAL = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
_EXECUTION = {OrderStatus.CANCELED: "CANCELED", OrderStatus.EXPIRED: "EXPIRED"}

UNKNOWN_ORDER_CANCEL = (400, {"code": -2011, "msg": "Unknown order sent."})
UNKNOWN_ORDER_QUERY = (400, {"code": -2013, "msg": "Order does not exist."})
GTX_WOULD_TAKE = (400, {"code": -5022, "msg": "Due to the order could not be executed as maker, the Post Only "
                                              "order will be rejected. The order will not be recorded in the order "
                                              "history"})
FOK_UNFILLED = (400, {"code": -5021, "msg": "Due to the order could not be filled immediately, the FOK order has "
                                            "been rejected. The order will not be recorded in the order history"})
REDUCE_ONLY_REJECTED = (400, {"code": -2022, "msg": "ReduceOnly Order is rejected."})
NO_MARGIN = (400, {"code": -2019, "msg": "Margin is insufficient."})
DUPLICATE = (400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
SAME_ORDER = (400, {"code": -5027, "msg": "No need to modify the order."})
NO_LISTEN_KEY = (400, {"code": -1125, "msg": "This listenKey does not exist."})


def _text(value: Decimal) -> str:
    """An amount at 8 decimals, as Binance writes wallet and PnL figures."""
    return format(value.quantize(_EIGHT, rounding=ROUND_HALF_EVEN), "f")


@dataclasses.dataclass
class _Position:
    symbol: str
    amount: Decimal = Decimal(0)        # signed: long > 0, short < 0
    entry: Decimal = Decimal(0)         # average entry price of what is held
    realized: Decimal = Decimal(0)      # accumulated realized PnL before fees (ACCOUNT_UPDATE "cr")
    update_ms: int = 0


class FuturesWallet:
    """The USDT-M wallet and one-way positions, moved by fills as SimMatcher reports them (`on_fill`).
    `realized` holds each fill's realized PnL, in the matcher's fill order (userTrades' realizedPnl)."""

    def __init__(self, balances: dict[str, int] | None = None):
        self.balances = {a: int(v) for a, v in (balances or {}).items()}     # asset -> raw, 8 decimals
        self.positions: dict[int, _Position] = {}       # instrument id -> position
        self.realized: list[Decimal] = []

    def wallet(self, asset: str = MARGIN_ASSET) -> Decimal:
        return from_raw(self.balances.get(asset, 0), ACCOUNT_PRECISION)

    def position(self, inst) -> _Position:
        pos = self.positions.get(inst.instrument_id)
        if pos is None:
            pos = self.positions[inst.instrument_id] = _Position(inst.symbol)
        return pos

    def on_fill(self, inst, side, price: int, qty: int, notional: int, fee: int):
        pos = self.position(inst)
        fill_price = from_raw(price, inst.price_precision)
        fill_qty = from_raw(qty, inst.size_precision) * inst.multiplier
        sign = 1 if side == Side.BUY else -1
        pnl = Decimal(0)
        if pos.amount and (pos.amount > 0) != (sign > 0):
            closing = min(fill_qty, abs(pos.amount))
            pnl = (fill_price - pos.entry) * closing * (1 if pos.amount > 0 else -1)
            pos.amount += sign * closing
            fill_qty -= closing
            if not pos.amount:
                pos.entry = Decimal(0)
        if fill_qty:
            if pos.amount:          # it grows: the entry is the average of what it holds
                held = abs(pos.amount)
                pos.entry = (pos.entry * held + fill_price * fill_qty) / (held + fill_qty)
            else:                   # opened, or flipped: what is left opens at the fill's price
                pos.entry = fill_price
            pos.amount += sign * fill_qty
        pnl = pnl.quantize(_EIGHT, rounding=ROUND_HALF_EVEN)
        pos.realized += pnl
        self.realized.append(pnl)
        asset = inst.quote
        self.balances[asset] = self.balances.get(asset, 0) + int(pnl.scaleb(ACCOUNT_PRECISION)) - fee


@dataclasses.dataclass
class _FuturesOrder(_OrderInfo):
    reduce_only: bool = False


class BinanceFuturesOrders(BinanceOrderEntry):
    """One USDT-M futures account on the simulated venue (signed REST /fapi, see the module doc); its user
    data events go to its subscribers (`subscribe`), the end of a listen key to `on_listen_key_end(key, expired)`."""
    MARKET = USDM
    PREFIX = "/fapi/"
    WEIGHTS = WEIGHTS
    SIGNED = _SIGNED
    NEW_ORDERS = frozenset({("POST", "v1/order"), ("PUT", "v1/order")})
    FAULTED = ("POST", "PUT", "DELETE")

    def __init__(self, keys: ApiKeys, exchange_info: Callable[[], bytes | None],
                 depth: Callable[[str, int], dict | None], model: FillModel | None = None,
                 balances: dict[str, int] | None = None, clock: Callable[[], float] = time.time,
                 limits: RateLimits | None = None, gate: VenueGate | None = None,
                 listen_key_ttl_s: float = LISTEN_KEY_TTL_S, leverage: int = LEVERAGE):
        self.wallet = FuturesWallet(balances)
        super().__init__(keys, exchange_info, depth, model, self.wallet, clock, limits, gate)
        self.listen_key_ttl_s = listen_key_ttl_s
        self.leverage = leverage
        self.listen_key: str | None = None
        self.listen_key_until_ms = 0.0
        self.on_listen_key_end: list[Callable[[str, bool], None]] = []
        self._next_id = FIRST_ORDER_ID - 1      # futures orderIds never meet spot ones in the venue's record
        self._announced: set[int] = set()       # orders whose NEW went out
        self._unrecorded: set[int] = set()      # a GTX that would take, a FOK that cannot fill: no order at all

    # -- listen keys ----------------------------------------------------------------------------------
    def live_listen_key(self, now_ms: float | None = None) -> str | None:
        now_ms = self.now_ms() if now_ms is None else now_ms
        if self.listen_key is not None and now_ms >= self.listen_key_until_ms:
            self.expire_listen_key(now_ms)
        return self.listen_key

    def expire_listen_key(self, now_ms: float | None = None) -> str | None:
        """The live listen key expires now (TTL reached, or the listen_key_expire fault): its streams are
        told listenKeyExpired and closed. Which key it was (None: there was none)."""
        key = self.listen_key
        if key is None:
            return None
        now_ms = self.now_ms() if now_ms is None else now_ms
        self.listen_key = None
        self._publish({"e": "listenKeyExpired", "E": str(int(now_ms)), "listenKey": key})
        self._end_listen_key(key, expired=True)
        return key

    def _end_listen_key(self, key: str, expired: bool):
        for callback in list(self.on_listen_key_end):
            try:
                callback(key, expired)
            except Exception:       # one stream's bug must not stop the venue
                log.exception("listen key end")

    def _listen_key(self, method, headers, now_ms) -> Answer:
        api_key = next((v for k, v in headers.items() if k.lower() == "x-mbx-apikey"), None)
        if not api_key or not api_key.isalnum() or not api_key.isascii():
            return Answer(401, {"code": -2014, "msg": "API-key format invalid."})
        if api_key not in self.keys:
            return Answer(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
        live = self.live_listen_key(now_ms)
        if method == "POST":
            if live is None:
                alphabet = string.ascii_letters + string.digits
                self.listen_key = "".join(secrets.choice(alphabet) for _ in range(64))
            self.listen_key_until_ms = now_ms + self.listen_key_ttl_s * 1000
            return Answer(200, {"listenKey": self.listen_key})
        if live is None:
            return Answer(*NO_LISTEN_KEY)
        if method == "PUT":
            self.listen_key_until_ms = now_ms + self.listen_key_ttl_s * 1000
            return Answer(200, {"listenKey": live})
        self.listen_key = None          # DELETE: the stream closes, no listenKeyExpired
        self._end_listen_key(live, expired=False)
        return Answer(200, {})

    def listen_key_request(self, method: str, api_key: str, now_ms: float) -> Answer:
        """POST / PUT / DELETE /fapi/v1/listenKey for `api_key`: the WebSocket API's userDataStream.start / ping /
        stop manage the same key."""
        return self._listen_key(method, {"X-MBX-APIKEY": api_key}, now_ms)

    def _unsigned(self, method, endpoint, params, headers, now_ms) -> Answer | None:
        if endpoint == "v1/listenKey" and method in ("POST", "PUT", "DELETE"):
            return self._listen_key(method, headers, now_ms)
        return super()._unsigned(method, endpoint, params, headers, now_ms)

    def turn(self):
        """The market turn: a listen key past its time expires, resting orders meet the moving book."""
        if self.listen_key is not None:
            self.live_listen_key()
        super().turn()

    def weight(self, method, endpoint, params) -> int:
        weight = WEIGHTS.get((method, endpoint), 1)
        if endpoint == "v1/depth":
            limit = int(params.get("limit") or 500) if (params.get("limit") or "500").isdigit() else 500
            weight = 2 if limit < 100 else 5 if limit <= 100 else 10 if limit <= 500 else 20
        elif endpoint == "v1/openOrders" and method == "GET" and not params.get("symbol"):
            weight = 40
        return weight

    # -- user data events -----------------------------------------------------------------------------
    def _on_report(self, info: _FuturesOrder, report, now_ms: int):
        """ORDER_TRADE_UPDATE(s) of one matcher report: NEW first for every order the venue took, then TRADE
        per fill, CANCELED, EXPIRED. A GTX that would take and a FOK that cannot fill are no order: nothing."""
        status, order_id = report.status, info.order_id
        if status == OrderStatus.REJECTED or order_id in self._unrecorded:
            return
        if order_id not in self._announced:
            if info.tif == "FOK" and status == OrderStatus.EXPIRED and not report.cum_qty:
                self._unrecorded.add(order_id)
                return
            self._announced.add(order_id)
            self._tell(self._order_update, info, "NEW", "NEW", 0, now_ms, now_ms)
        if status == OrderStatus.ACCEPTED:
            return                      # taken (NEW above), or an amendment (its AMENDMENT is _put_order's)
        at_ms = report.ts_exchange // 1_000_000
        if report.trade_id and report.last_qty:
            self._tell(self._order_update, info, "TRADE", _STATUS[status], report.cum_qty, now_ms, at_ms,
                       trade=report)
        elif status in _EXECUTION:
            self._tell(self._order_update, info, _EXECUTION[status], _STATUS[status], report.cum_qty, now_ms, at_ms)

    def _after_reports(self, now_ms: int, reports: list):
        """ACCOUNT_UPDATE when fills moved the wallet and positions (not for orders taken or canceled)."""
        traded = {r.instrument_id: r.ts_exchange // 1_000_000 for r in reports if r.trade_id and r.last_qty}
        if not traded:
            return
        for instrument_id, at_ms in traded.items():
            self.wallet.position(self.table[instrument_id]).update_ms = at_ms
        wallet = _text(self.wallet.wallet())
        positions = []
        for instrument_id in sorted(traded):
            inst = self.table[instrument_id]
            pos = self.wallet.position(inst)
            mark = self._mark(self.symbols[inst.symbol])
            positions.append({"s": inst.symbol, "pa": self._qty(inst, pos.amount), "ep": _text(pos.entry),
                              "bep": _text(pos.entry), "cr": _text(pos.realized),
                              "up": _text(self._unrealized(pos, mark)), "mt": "cross", "iw": "0", "ps": "BOTH"})
        self._publish({"e": "ACCOUNT_UPDATE", "E": now_ms, "T": max(traded.values()),
                       "a": {"m": "ORDER", "B": [{"a": MARGIN_ASSET, "wb": wallet, "cw": wallet, "bc": "0"}],
                             "P": positions}})

    def _order_update(self, info: _FuturesOrder, execution, status, cum_raw, now_ms, at_ms, trade=None) -> dict:
        inst = self.table[info.instrument_id]
        cum = from_raw(cum_raw, inst.size_precision)
        order = {"s": info.symbol, "c": info.client_id, "S": info.side, "o": info.type, "f": info.tif,
                 "q": self._qty(inst, info.qty), "p": self._price(inst, info.price),
                 "ap": self._avg(info, inst, trade.trade_id if trade is not None else None) if cum_raw else "0",
                 "sp": "0", "x": execution, "X": status, "i": info.order_id,
                 "l": self._qty(inst, Decimal(0)), "z": self._qty(inst, cum), "L": "0", "T": at_ms, "t": 0,
                 "b": "0", "a": "0", "m": False, "R": info.reduce_only, "wt": "CONTRACT_PRICE", "ot": info.type,
                 "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE",
                 "gtd": 0}
        if trade is not None:
            index, fill = self._fill_of(trade.trade_id)
            order.update({"l": self._qty(inst, from_raw(trade.last_qty, inst.size_precision)),
                          "L": self._price(inst, from_raw(trade.last_price, inst.price_precision)),
                          "N": MARGIN_ASSET, "n": format(from_raw(trade.fee, ACCOUNT_PRECISION), "f"),
                          "t": trade.trade_id, "m": trade.liquidity == Liquidity.MAKER,
                          "rp": _text(self.wallet.realized[index])})
        return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": at_ms, "o": order}

    def _fill_of(self, trade_id: int) -> tuple[int, dict]:
        # trade ids count up from 1 with the matcher's fills
        index = trade_id - 1
        fill = self.matcher.fills[index]
        assert fill["trade_id"] == trade_id
        return index, fill

    # -- what the account holds ------------------------------------------------------------------------
    def _mark(self, sym) -> Decimal | None:
        """The mark price: the mid of the venue's book (else the last trade seen)."""
        return self._reference(sym) if sym is not None else None

    @staticmethod
    def _unrealized(pos: _Position, mark: Decimal | None) -> Decimal:
        return (mark - pos.entry) * pos.amount if mark is not None and pos.amount else Decimal(0)

    def _order_margin(self, inst, price: Decimal, qty: Decimal) -> Decimal:
        return price * qty * inst.multiplier / self.leverage

    def _margins(self) -> tuple[Decimal, Decimal, Decimal]:
        """(unrealized PnL, initial margin of the positions, initial margin of the open orders), USDT."""
        unrealized = position_margin = order_margin = Decimal(0)
        for pos in self.wallet.positions.values():
            if pos.amount:
                mark = self._mark(self.symbols.get(pos.symbol))
                unrealized += self._unrealized(pos, mark)
                position_margin += abs(pos.amount) * (mark or pos.entry) / self.leverage
        for o in self.matcher.resting.values():
            info = self.orders[o.client_order_id]
            if not info.reduce_only:
                inst = self.table[o.instrument_id]
                order_margin += self._order_margin(inst, info.price, from_raw(o.leaves, inst.size_precision))
        return unrealized, position_margin, order_margin

    def _available(self) -> Decimal:
        unrealized, position_margin, order_margin = self._margins()
        return self.wallet.wallet() + unrealized - position_margin - order_margin

    # -- orders' state ---------------------------------------------------------------------------------
    def _avg(self, info, inst, upto_trade_id: int | None = None) -> str:
        """The order's average fill price (through trade upto_trade_id), "0" before any fill."""
        qty = quote = Decimal(0)
        for f in self.matcher.fills:
            if upto_trade_id is not None and f["trade_id"] > upto_trade_id:
                break
            if f["client_order_id"] == info.order_id:
                q = from_raw(f["qty"], inst.size_precision)
                qty += q
                quote += from_raw(f["price"], inst.price_precision) * q
        return _text(quote / qty) if qty else "0"

    def _order_doc(self, info: _FuturesOrder, query=False) -> dict:
        inst = self.table[info.instrument_id]
        o = self._matcher_order(info.order_id)
        quote = sum((from_raw(f["price"], inst.price_precision) * from_raw(f["qty"], inst.size_precision)
                     for f in self.matcher.fills if f["client_order_id"] == info.order_id), Decimal(0))
        executed = self._qty(inst, from_raw(o.cum_qty, inst.size_precision))
        doc = {"orderId": info.order_id, "symbol": info.symbol, "status": _STATUS[o.status],
               "clientOrderId": info.client_id, "price": self._price(inst, info.price),
               "avgPrice": self._avg(info, inst), "origQty": self._qty(inst, info.qty), "executedQty": executed,
               "cumQty": executed, "cumQuote": _text(quote), "timeInForce": info.tif, "type": info.type,
               "reduceOnly": info.reduce_only, "closePosition": False, "side": info.side, "positionSide": "BOTH",
               "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": info.type,
               "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
               "updateTime": info.update_ms}
        if query:
            del doc["cumQty"]
            doc["time"] = info.time_ms
        return doc

    def record(self) -> dict:
        out = super().record()
        out["orders"] = [o for o in out["orders"] if o["orderId"] not in self._unrecorded]
        return out

    # -- endpoints --------------------------------------------------------------------------------------
    def _post_order(self, params, now_ms):
        sym = self._symbol(params)
        side, kind = params.get("side", ""), params.get("type", "")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise _Refused(400, -1117, "Invalid side.")
        if not kind:
            raise _mandatory("type")
        if kind in _CONDITIONAL:
            raise _Refused(400, -1116, f"Invalid orderType. (venue-sim takes no {kind} orders yet)")
        if kind not in ("LIMIT", "MARKET"):
            raise _Refused(400, -1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise _Refused(400, -4061, "Order's position side does not match user's setting.")
        if params.get("closePosition", "false").lower() == "true":
            raise _Refused(400, -1116, "Invalid orderType. (venue-sim takes no closePosition orders yet)")
        reduce_only = self._flag(params, "reduceOnly")
        qty = self._number(params, "quantity")
        if qty is None:
            raise _mandatory("quantity")
        price = self._number(params, "price")
        tif = params.get("timeInForce") or ""
        if kind == "LIMIT":
            if price is None:
                raise _mandatory("price")
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in _TIFS:
                raise _Refused(400, -1115, "Invalid timeInForce.")
        else:
            if price is not None:
                raise _not_required("price")
            tif = "GTC"                 # what Binance says of a MARKET order
        resp_type = params.get("newOrderRespType") or "ACK"
        if resp_type not in ("ACK", "RESULT"):
            raise _Refused(400, -1136, "Invalid newOrderRespType.")
        client_id = params.get("newClientOrderId") or self._new_client_id()
        if not (len(client_id) <= 36 and set(client_id) <= _ID_CHARS):
            raise _Refused(400, -4015, "Client order id is not valid.")

        self._refresh(sym, now_ms)
        open_here = [o for o in self.matcher.resting.values() if o.instrument_id == sym.instrument_id]
        reference = self._reference(sym)
        failure = check_new_order(sym.filters, side, kind, price, qty, reference, len(open_here), reduce_only)
        if failure is not None:
            return 400, failure
        previous = self.by_client_id.get((sym.filters.symbol, client_id))
        if previous is not None and self._matcher_order(previous).status not in _DONE:
            return DUPLICATE
        inst = self.table[sym.instrument_id]
        held = self.wallet.position(inst).amount
        if reduce_only and (not held or (held > 0) == (side == "BUY") or qty * inst.multiplier > abs(held)):
            return REDUCE_ONLY_REJECTED
        if not reduce_only and reference is not None and \
                self._order_margin(inst, price or reference, qty) > self._available():
            return NO_MARGIN

        self._next_id += 1
        order_id = self._next_id
        order_type = OrderType.MARKET if kind == "MARKET" else {
            "GTC": OrderType.LIMIT, "IOC": OrderType.IOC, "FOK": OrderType.FOK, "GTX": OrderType.POST_ONLY}[tif]
        info = _FuturesOrder(order_id, sym.filters.symbol, client_id, side, kind, tif, price or Decimal(0), qty,
                             now_ms, now_ms, sym.instrument_id, reduce_only)
        self.orders[order_id] = info
        self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=order_id, instrument_id=sym.instrument_id,
                                  action=OrderAction.NEW, side=Side.BUY if side == "BUY" else Side.SELL,
                                  order_type=order_type, price=inst.price_to_raw(price) if price is not None else 0,
                                  qty=inst.qty_to_raw(qty)), now_ms * 1_000_000)
        self._settle(now_ms)
        o = self._matcher_order(order_id)
        if o.status == OrderStatus.REJECTED:        # a GTX that would take: no order at all
            del self.orders[order_id]
            return GTX_WOULD_TAKE
        if order_id in self._unrecorded:            # a FOK that cannot fill whole
            del self.orders[order_id]
            return FOK_UNFILLED
        self.by_client_id[(info.symbol, client_id)] = order_id
        doc = self._order_doc(info)
        if resp_type == "ACK":          # the order as the venue took it, before it matched
            zero = self._qty(inst, Decimal(0))
            doc.update({"status": "NEW", "executedQty": zero, "cumQty": zero, "cumQuote": _text(Decimal(0)),
                        "avgPrice": "0", "updateTime": now_ms})
        return 200, doc

    def _flag(self, params, name) -> bool:
        value = params.get(name, "false").lower()
        if value not in ("true", "false"):
            raise _Refused(400, -1130, f"Data sent for parameter '{name}' is not valid.")
        return value == "true"

    def _put_order(self, params, now_ms):
        """Modify a resting LIMIT order's price and quantity (it loses its place in the queue)."""
        sym = self._symbol(params)
        for name in ("side", "quantity", "price"):
            if not params.get(name):
                raise _mandatory(name)
        qty, price = self._number(params, "quantity"), self._number(params, "price")
        self._refresh(sym, now_ms)
        info = self._find(params, UNKNOWN_ORDER_QUERY)
        if (STRATEGY, info.order_id) not in self.matcher.resting:
            return UNKNOWN_ORDER_QUERY
        if info.type != "LIMIT":
            raise _Refused(400, -5025, "Only limit order is supported.")
        if params["side"] != info.side:
            raise _Refused(400, -1117, "Invalid side.")
        if price == info.price and qty == info.qty:
            return SAME_ORDER
        failure = check_new_order(sym.filters, info.side, "LIMIT", price, qty, self._reference(sym), None,
                                  info.reduce_only)
        if failure is not None:
            return 400, failure
        inst = self.table[sym.instrument_id]
        o = self._matcher_order(info.order_id)
        m = self.matcher.market(sym.instrument_id)
        price_raw, qty_raw = inst.price_to_raw(price), inst.qty_to_raw(qty)
        crosses = (m.ask and price_raw >= m.ask) if info.side == "BUY" else (m.bid and price_raw <= m.bid)
        if qty_raw <= o.cum_qty or (info.tif == "GTX" and crosses):
            # Binance: the amendment cancels such an order
            self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=self._next_client_seq(),
                                      target_order_id=info.order_id, instrument_id=info.instrument_id,
                                      action=OrderAction.CANCEL, side=o.side, order_type=o.order_type),
                                now_ms * 1_000_000)
            self._settle(now_ms)
            return 200, self._order_doc(info)
        info.price, info.qty, info.update_ms = price, qty, now_ms
        self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=self._next_client_seq(),
                                  target_order_id=info.order_id, instrument_id=info.instrument_id,
                                  action=OrderAction.AMEND, side=o.side, order_type=o.order_type,
                                  price=price_raw, qty=qty_raw), now_ms * 1_000_000)
        self._settle(now_ms)
        self._tell(self._order_update, info, "AMENDMENT", _STATUS[o.status], o.cum_qty, now_ms, now_ms)
        if crosses:                 # moved across the book: it fills as the book's next move would fill it
            sym.book_id = -1
            self._refresh(sym, now_ms)
        return 200, self._order_doc(info)

    def _delete_order(self, params, now_ms):
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        info = self._find(params, UNKNOWN_ORDER_CANCEL)
        if (STRATEGY, info.order_id) not in self.matcher.resting:
            return UNKNOWN_ORDER_CANCEL
        return 200, self._cancel(info, now_ms)

    def _cancel(self, info, now_ms) -> dict:
        o = self._matcher_order(info.order_id)
        self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=self._next_client_seq(),
                                  target_order_id=info.order_id, instrument_id=info.instrument_id,
                                  action=OrderAction.CANCEL, side=o.side, order_type=o.order_type),
                            now_ms * 1_000_000)
        self._settle(now_ms)
        return self._order_doc(info)

    def _delete_allOpenOrders(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        for order_id in sorted(o.client_order_id for o in self.matcher.resting.values()
                               if o.instrument_id == sym.instrument_id):
            self._cancel(self.orders[order_id], now_ms)
        return 200, {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _get_order(self, params, now_ms):
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        return 200, self._order_doc(self._find(params, UNKNOWN_ORDER_QUERY), query=True)

    def _get_openOrders(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        sym = self._symbol(params, required=False)
        self._refresh_all(now_ms, sym)
        open_ids = sorted(o.client_order_id for o in self.matcher.resting.values()
                          if sym is None or o.instrument_id == sym.instrument_id)
        return 200, [self._order_doc(self.orders[i], query=True) for i in open_ids]

    def _positions(self, now_ms, only=None) -> list[dict]:
        out = []
        for name, sym in sorted(self.symbols.items()):
            if only is not None and name != only.filters.symbol:
                continue
            self._refresh(sym, now_ms)
            inst = self.table[sym.instrument_id]
            pos = self.wallet.position(inst)
            mark = self._mark(sym)
            notional = (mark or Decimal(0)) * pos.amount
            out.append({"symbol": name, "positionAmt": self._qty(inst, pos.amount), "entryPrice": _text(pos.entry),
                        "breakEvenPrice": _text(pos.entry), "markPrice": _text(mark or Decimal(0)),
                        "unRealizedProfit": _text(self._unrealized(pos, mark)), "liquidationPrice": "0",
                        "leverage": str(self.leverage), "maxNotionalValue": "1000000", "marginType": "cross",
                        "isolatedMargin": "0.00000000", "isAutoAddMargin": "false", "positionSide": "BOTH",
                        "notional": _text(notional), "isolatedWallet": "0", "updateTime": pos.update_ms,
                        "initialMargin": _text(abs(notional) / self.leverage)})
        return out

    def _get_positionRisk(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        sym = self._symbol(params, required=False)
        return 200, [{k: v for k, v in p.items() if k != "initialMargin"} for p in self._positions(now_ms, sym)]

    def _balance_figures(self, now_ms) -> dict:
        self._refresh_all(now_ms)
        unrealized, position_margin, order_margin = self._margins()
        wallet = self.wallet.wallet()
        available = wallet + unrealized - position_margin - order_margin
        return {"wallet": wallet, "unrealized": unrealized, "position_margin": position_margin,
                "order_margin": order_margin, "available": available}

    def _get_balance(self, params, now_ms):
        f = self._balance_figures(now_ms)
        return 200, [{"accountAlias": "SgsR", "asset": MARGIN_ASSET, "balance": _text(f["wallet"]),
                      "crossWalletBalance": _text(f["wallet"]), "crossUnPnl": _text(f["unrealized"]),
                      "availableBalance": _text(f["available"]), "maxWithdrawAmount": _text(max(f["available"], 0)),
                      "marginAvailable": True, "updateTime": now_ms}]

    def _get_account(self, params, now_ms):
        f = self._balance_figures(now_ms)
        initial = f["position_margin"] + f["order_margin"]
        margin_balance = f["wallet"] + f["unrealized"]
        withdraw = max(f["available"], Decimal(0))
        asset = {"asset": MARGIN_ASSET, "walletBalance": _text(f["wallet"]), "unrealizedProfit": _text(f["unrealized"]),
                 "marginBalance": _text(margin_balance), "maintMargin": _text(Decimal(0)),
                 "initialMargin": _text(initial), "positionInitialMargin": _text(f["position_margin"]),
                 "openOrderInitialMargin": _text(f["order_margin"]), "crossWalletBalance": _text(f["wallet"]),
                 "crossUnPnl": _text(f["unrealized"]), "availableBalance": _text(f["available"]),
                 "maxWithdrawAmount": _text(withdraw), "marginAvailable": True, "updateTime": now_ms}
        positions = [{"symbol": p["symbol"], "initialMargin": p["initialMargin"], "maintMargin": "0",
                      "unrealizedProfit": p["unRealizedProfit"], "positionInitialMargin": p["initialMargin"],
                      "openOrderInitialMargin": "0", "leverage": p["leverage"], "isolated": False,
                      "entryPrice": p["entryPrice"], "breakEvenPrice": p["breakEvenPrice"],
                      "maxNotional": p["maxNotionalValue"], "positionSide": "BOTH", "positionAmt": p["positionAmt"],
                      "updateTime": p["updateTime"]} for p in self._positions(now_ms)]
        m = self.model
        return 200, {
            "feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
            "makerCommissionRate": _text(Decimal(m.maker_fee_ppm).scaleb(-6)),
            "takerCommissionRate": _text(Decimal(m.taker_fee_ppm).scaleb(-6)),
            "totalInitialMargin": _text(initial), "totalMaintMargin": _text(Decimal(0)),
            "totalWalletBalance": _text(f["wallet"]), "totalUnrealizedProfit": _text(f["unrealized"]),
            "totalMarginBalance": _text(margin_balance), "totalPositionInitialMargin": _text(f["position_margin"]),
            "totalOpenOrderInitialMargin": _text(f["order_margin"]), "totalCrossWalletBalance": _text(f["wallet"]),
            "totalCrossUnPnl": _text(f["unrealized"]), "availableBalance": _text(f["available"]),
            "maxWithdrawAmount": _text(withdraw), "assets": [asset], "positions": positions}

    def _get_userTrades(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        inst, limit, trades = self._trades(params, now_ms)
        out = []
        for index, f, info, at_ms, price, qty in trades:
            out.append({"symbol": info.symbol, "id": f["trade_id"], "orderId": info.order_id, "side": info.side,
                        "price": self._price(inst, price), "qty": self._qty(inst, qty),
                        "realizedPnl": _text(self.wallet.realized[index]), "marginAsset": MARGIN_ASSET,
                        "quoteQty": _text(price * qty),
                        "commission": format(from_raw(f["fee"], ACCOUNT_PRECISION), "f"),
                        "commissionAsset": MARGIN_ASSET, "time": at_ms, "positionSide": "BOTH",
                        "maker": f["liquidity"] == Liquidity.MAKER, "buyer": info.side == "BUY"})
        return 200, out[:limit]


class _UserStream(WSListener):
    """One connection to ws://.../ws/<listenKey>: the account's events as they happen, nothing it sends."""

    def __init__(self, streams: FuturesUserStreams, listen_key: str):
        self.streams, self.listen_key = streams, listen_key
        self.transport = None
        self.last_pong = time.monotonic()

    def on_ws_connected(self, transport):
        self.transport = transport
        self.streams.sessions.add(self)

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.PONG:
            self.last_pong = time.monotonic()
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport):
        self.streams.sessions.discard(self)

    def send(self, payload: bytes):
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, payload)


class FuturesUserStreams:
    """The user data streams of one BinanceFuturesOrders account: a connection per /ws/<listenKey>, each sent
    every event while its key lives; the end of the key (expiry: after listenKeyExpired) closes them."""

    def __init__(self, orders: BinanceFuturesOrders):
        self.orders = orders
        self.sessions: set[_UserStream] = set()
        orders.subscribe(self._on_event, lambda: bool(self.sessions))
        orders.on_listen_key_end.append(self._on_key_end)

    def session(self, listen_key: str) -> _UserStream | None:
        """A listener for a new connection, or None when the key is not the live one."""
        live = self.orders.live_listen_key()
        return _UserStream(self, listen_key) if live is not None and listen_key == live else None

    def _on_event(self, event: dict):
        payload = orjson.dumps(event)
        key = event.get("listenKey") if event.get("e") == "listenKeyExpired" else self.orders.listen_key
        for s in list(self.sessions):
            if s.listen_key == key:
                s.send(payload)

    def _on_key_end(self, key: str, expired: bool):
        for s in list(self.sessions):
            if s.listen_key == key and s.transport is not None:
                s.transport.send_close(1000, b"listenKey expired" if expired else b"listenKey closed")
                s.transport.disconnect()
                self.sessions.discard(s)

    def drop_all(self) -> int:
        """Close every user data stream now (user_drop fault; the listen key stays valid)."""
        sessions = list(self.sessions)
        for s in sessions:
            if s.transport is not None:
                s.transport.disconnect(graceful=False)
        self.sessions.clear()
        return len(sessions)

    def ping_all(self, timeout_s: float) -> int:
        """Ping every stream; close those silent for timeout_s. How many pinged."""
        now, pinged = time.monotonic(), 0
        for s in list(self.sessions):
            if s.transport is None or s.transport.is_disconnected:
                continue
            if now - s.last_pong > timeout_s:
                s.transport.disconnect(graceful=False)
            else:
                s.transport.send_ping(b"sim")
                pinged += 1
        return pinged


def fault(orders: BinanceFuturesOrders, kind: str, query: Mapping[str, str]) -> dict:
    """A futures fault (GET /_sim/fault?kind=listen_key_expire): what it did."""
    if kind == "listen_key_expire":
        return {"ok": kind, "expired": orders.expire_listen_key() is not None}
    raise ValueError(kind)
