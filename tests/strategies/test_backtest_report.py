"""The backtest report (strategies/backtest/report.py): one HTML file that headless Chromium
opens with every plot drawn, nothing logged as an error and nothing fetched; the same document
gives the same bytes, in this process and in another; an empty run gets notes, not a failure."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.sim.matching import FillModel
from ttquant.strategies.backtest import run_backtest
from ttquant.strategies.backtest.data import load_events
from ttquant.strategies.backtest.report import PLOTS, format_statistic, rolling_sharpe, trade_prices, write_report
from ttquant.strategies.backtest.results import result_document
from ttquant.strategies.backtest.statistics import compute_statistics
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.loader import load_strategy_class

CAPTURE = sample_data_dir() / "binance" / "usdm_btcusdt_20240808.gz"
CHROMIUM = "/usr/bin/chromium"
EMPTY_PLOTS = ("position", "fills-on-price", "pnl-distribution", "rolling-sharpe")


class Idle(BaseStrategy):
    """Watches the market and never trades: the run with no fills."""
    name = "idle"


@pytest.fixture(scope="module")
def market():
    return load_events(str(CAPTURE))


def _document(market, cls, params):
    events, table = market
    model = FillModel()
    result = run_backtest(cls, params, events, table, model=model, strategy_id=3, raise_errors=True)
    return result_document(result, events, table, strategy=cls.name, params=params, data=str(CAPTURE),
                           fill_model=model, capital=10000.0, period_s=10.0)


@pytest.fixture(scope="module")
def ema_run(market):
    return _document(market, load_strategy_class("ema_cross", os.getcwd()), {"market": "usdm", "fast": 10, "slow": 50})


@pytest.fixture(scope="module")
def idle_run(market):
    return _document(market, Idle, {})


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the report test drives Debian's Chromium (make test installs it: "
                    f"apt-get install -y --no-install-recommends chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (make test installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


def _open(browser, path):
    """(page, console errors, page errors, URLs requested) of the report at path, loaded."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console, errors, requests = [], [], []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "assert") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, console, errors, requests


def _drawn(page, fid) -> bool:
    """The figure holds an <svg> with marks in it, or a decoded <img>, laid out at a non-zero size."""
    figure = page.locator(f"figure.plot#{fid}")
    for el in figure.locator("svg, img").all():
        box = el.bounding_box()
        if not box or box["width"] <= 0 or box["height"] <= 0:
            continue
        if el.evaluate("e => e.tagName.toLowerCase()") == "img":
            if el.evaluate("e => e.complete && e.naturalWidth > 0"):
                return True
        elif el.locator("path").count() > 0:
            return True
    return False


def test_every_plot_renders_in_chromium_with_nothing_in_the_console(browser, ema_run, market, tmp_path):
    events, table = market
    assert ema_run["fills"] >= 50 and len(ema_run["round_trips"]) >= 20    # a run with something to draw
    path = tmp_path / "report.html"
    write_report(ema_run, path, prices=trade_prices(events, table), table=table)
    page, console, errors, requests = _open(browser, path)
    try:
        assert page.locator("figure.plot").count() == len(PLOTS)
        for fid in PLOTS:
            assert _drawn(page, fid), f"{fid}: no plot drawn"
            assert page.locator(f"figure.plot#{fid} figcaption").inner_text().strip()
        assert page.locator("p.empty").count() == 0
        header = page.locator("body").inner_text()
        assert "ema_cross" in header and "fast=10" in header and "latency_ns=" in header
        assert "BTCUSDT.perp" in header and str(CAPTURE) in header
        stats = ema_run["statistics"]
        assert format_statistic("max_drawdown", stats["max_drawdown"]) in page.locator("#statistics").inner_text()
        assert "%" in format_statistic("win_rate", stats["win_rate"])
    finally:
        page.close()
    assert console == [] and errors == []
    assert set(requests) == {path.as_uri()}         # self-contained: nothing else fetched


def test_the_same_document_gives_the_same_bytes(ema_run, market, tmp_path):
    events, table = market
    prices = trade_prices(events, table)
    for name in ("a.html", "b.html"):
        write_report(ema_run, tmp_path / name, prices=prices, table=table)
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    # another process: matplotlib's per-process random salt must not reach the file
    (tmp_path / "result.json").write_text(json.dumps(ema_run))
    write_report(ema_run, tmp_path / "here.html")
    code = ("import json, sys\nfrom ttquant.strategies.backtest.report import write_report\n"
            "write_report(json.load(open(sys.argv[1])), sys.argv[2])\n")
    p = subprocess.run([sys.executable, "-c", code, tmp_path / "result.json", tmp_path / "there.html"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "here.html").read_bytes() == (tmp_path / "there.html").read_bytes()
    assert b"<dc:date>" not in (tmp_path / "here.html").read_bytes()


def test_a_run_without_fills_gets_notes_not_a_failure(browser, idle_run, tmp_path):
    assert idle_run["fills"] == 0 and idle_run["round_trips"] == []
    path = tmp_path / "empty.html"
    write_report(idle_run, path)
    page, console, errors, _ = _open(browser, path)
    try:
        assert page.locator("figure.plot").count() == len(PLOTS)
        assert _drawn(page, "equity-drawdown")     # flat at the capital, still a curve
        for fid in EMPTY_PLOTS:
            note = page.locator(f"figure.plot#{fid} p.empty").inner_text()
            assert note.startswith("no "), (fid, note)
        assert "no fills" in page.locator("figure.plot#position").inner_text()
        # a Sharpe of a curve that never moved is undefined: '-', not 'nan' or 'None'
        cells = page.locator("#statistics").inner_text()
        assert "nan" not in cells.lower() and "None" not in cells
    finally:
        page.close()
    assert console == [] and errors == []


def test_a_document_without_a_curve_still_writes(tmp_path):
    doc = {"strategy": "x", "equity_curve": {"ts": [], "equity": []}, "fill_list": [], "round_trips": [],
           "statistics": None}
    write_report(doc, tmp_path / "bare.html")
    text = (tmp_path / "bare.html").read_text()
    assert text.count('class="plot"') == len(PLOTS) and "<svg" not in text and "no statistics" in text


def test_rolling_sharpe_over_the_whole_curve_is_the_statistics_sharpe():
    rng = np.random.default_rng(7)
    equity = 10000 * np.cumprod(1 + rng.normal(0.0002, 0.001, 200))
    ppy = 365 * 24 * 360
    rolled = rolling_sharpe(equity, len(equity) - 1, ppy)
    assert len(rolled) == 1
    assert math.isclose(rolled[0], compute_statistics(equity, ppy).sharpe, rel_tol=1e-12)
    assert len(rolling_sharpe(equity, 30, ppy)) == len(equity) - 30
    assert np.isnan(rolling_sharpe(np.full(50, 100.0), 10, ppy)).all()     # no moves: undefined


def test_statistics_are_formatted_for_people():
    assert format_statistic("total_return", -0.000784) == "-0.0784%"
    assert format_statistic("sharpe", None) == "-"
    assert format_statistic("sharpe", 1.23456) == "1.235"
    assert format_statistic("trades", 1480) == "1,480"
    assert format_statistic("profit_factor", float("inf")) == "-"
