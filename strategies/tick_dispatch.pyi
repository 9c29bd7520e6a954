from collections.abc import Callable
from typing import Any

from ttquant.core.instruments import InstrumentTable
from ttquant.core.records import MarketEvent
from ttquant.core.rings import BroadcastReader
from ttquant.strategies.order_entry import OrderEntry

class TickDispatch:
    stopped: bool
    events: int
    reports: int
    def __init__(self, strategy: Any, strategy_id: int, entry: OrderEntry | None,
                 on_error: Callable[[BaseException], bool], wants_book: bool) -> None: ...
    def add_venue(self, ticks: BroadcastReader, exec_reports: BroadcastReader, table: InstrumentTable) -> int: ...
    def poll(self, rounds: int = 1) -> int: ...
    def dispatch(self, venue: int, event: MarketEvent) -> None: ...
