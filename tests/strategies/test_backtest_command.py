"""`ttquant backtest`: a strategy named as `ttquant strategy run` names it, its config's [params]
and [backtest] table, over a capture or a journal; result.json byte for byte the same for the
same inputs and seed, and different when the seed moves the fills."""
import json
import os
import subprocess
import sys

from ttquant.core.sim.captures import sample_data_dir

from ttq_stack import record_market
from ttq_testing import TESTS_DIR

CAPTURE = str(sample_data_dir() / "binance" / "usdm_btcusdt_20240808.gz")
CONFIG = """strategy_id = 3
[params]
market = "usdm"
fast = 10
slow = 50
[backtest]
capital = 10000
period_s = 10
[backtest.fill]
latency_us = 500
latency_jitter_us = 300
slippage_ppm = 10
seed = {seed}
"""


def backtest(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ttquant.core.cli", "backtest", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_same_inputs_give_the_same_result_file_byte_for_byte(tmp_path):
    results = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        (tmp_path / f"{run}.toml").write_text(CONFIG.format(seed=seed))
        p = backtest("ema_cross", "--config", f"{run}.toml", "--data", CAPTURE, "--out", run, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "orders" in p.stdout and f"{run}/result.json" in p.stdout
        assert p.stderr == ""                   # no progress bar when not on a terminal
        results.append((tmp_path / run / "result.json").read_bytes())
    assert results[0] == results[1]
    doc = json.loads(results[0])
    assert doc["orders_sent"] >= 50 and doc["fills"] >= 50 and doc["events"] == doc["data"]["events"]
    assert doc["fill_model"]["latency_ns"] == 500_000 and doc["statistics"]["trades"] >= 20
    assert len(doc["orders"]) == doc["orders_sent"] and len(doc["fill_list"]) == doc["fills"]
    # another seed draws other latencies, so other fills: the file says what the run did
    assert results[2] != results[0] and json.loads(results[2])["fill_list"] != doc["fill_list"]


def test_a_journal_directory_and_a_strategy_file(tmp_path):
    record_market(tmp_path / "journal", seconds=20, waves=True)
    (tmp_path / "cross.toml").write_text('strategy_id = 9\n[params]\nmode = "cross"\n')
    strategy = os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:MarketOnly")
    p = backtest(strategy, "--config", "cross.toml", "--data", "journal", "--out", "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["strategy_id"] == 9 and doc["orders_sent"] >= 20
    assert {o["side"] for o in doc["orders"]} == {1, 2}


def test_bad_input_is_refused_naming_what(tmp_path):
    (tmp_path / "bad.toml").write_text("strategy_id = 3\n[backtest.fill]\nlatency_us = -1\n")
    p = backtest("ema_cross", "--config", "bad.toml", "--data", CAPTURE, cwd=tmp_path)
    assert p.returncode == 2 and "bad.toml" in p.stderr and "latency_us" in p.stderr, p.stderr
    (tmp_path / "typo.toml").write_text("strategy_id = 3\n[params]\nfastt = 3\n")
    p = backtest("ema_cross", "--config", "typo.toml", "--data", CAPTURE, cwd=tmp_path)
    assert p.returncode == 2 and "params.fastt" in p.stderr, p.stderr
    p = backtest("ema_cross", "--data", tmp_path / "nothing", cwd=tmp_path)
    assert p.returncode == 2 and "no such file or directory" in p.stderr, p.stderr
    p = backtest("no_such_strategy", "--data", CAPTURE, cwd=tmp_path)
    assert p.returncode == 2 and "no_such_strategy" in p.stderr, p.stderr


def test_the_progress_line_shows_events_rate_and_time_left_on_a_terminal_only():
    import io

    from ttquant.strategies.backtest.run import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    out = Terminal()
    p = Progress(out)
    p.drawn -= 1                            # as if the last line were a second old
    p(250_000, 1_000_000)
    p(1_000_000, 1_000_000)
    first, last = out.getvalue().split("\r")[1:]
    assert "250,000/1,000,000 events" in first and "M/s" in first and "ETA" in first
    assert last.startswith("[" + "#" * 30 + "]") and last.endswith("\n")
    quiet = io.StringIO()
    Progress(quiet)(10, 10)
    assert quiet.getvalue() == ""
