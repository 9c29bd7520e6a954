"""Every shared-memory name comes from core/rings/names.py: the helpers, and no module of the
package spelling a ring name or /dev/shm out by hand (DESIGN.md §8)."""
import pathlib
import re

import pytest

from ttquant.core.rings.names import (
    SHM_DIR,
    book_board,
    exec_ring,
    instance_lock_file,
    instruments_file,
    kill_switch_file,
    order_ring,
    order_ring_prefix,
    ring_name,
    shm_path,
    telemetry_segment,
    tick_ring,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_names():
    assert tick_ring("binance") == "/ttq.binance.ticks" and book_board("binance") == "/ttq.binance.books"
    assert exec_ring("binance") == "/ttq.binance.exec"
    assert telemetry_segment("binance", "md") == "/ttq.binance.telemetry.md"
    assert order_ring("binance", "mm") == "/ttq.binance.orders.mm"
    assert order_ring_prefix("binance") == "ttq.binance.orders."
    assert shm_path(tick_ring("x")) == f"{SHM_DIR}/ttq.x.ticks"
    assert instruments_file("x") == f"{SHM_DIR}/ttq.x.instruments.json"
    assert kill_switch_file("x") == f"{SHM_DIR}/ttq.x.kill_switch.ctl"
    assert instance_lock_file("x", "strategy", "mm") == f"{SHM_DIR}/ttq.x.strategy.mm.lock"
    for bad in ("Binance", "a.b", "", "-x", "a/b"):
        with pytest.raises(ValueError):
            ring_name(bad, "ticks")


def test_no_module_spells_a_ring_name_or_the_shm_directory_out():
    found = []
    for folder in ("core", "strategies", "sidecars", "bench"):
        for path in (ROOT / folder).rglob("*.py*"):
            if path.suffix not in (".py", ".pyx") or path.name == "names.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"""f["']/?ttq\.\{|["']/dev/shm""", code):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
