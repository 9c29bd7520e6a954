"""Parameter sweeps: `ttquant backtest ... --sweep 'fast=5,10 slow=50,100'` runs the grid in
parallel processes and ranks it; with --cluster the same grid runs on a real Dask scheduler with
two workers (started here, on loopback) and gives the same file byte for byte."""
import json
import os
import socket
import subprocess
import sys

import pytest

from ttquant.core.sim.captures import sample_data_dir
from ttquant.strategies.backtest.sweep import grid_points, parse_grid, rank

from ttq_testing import wait_for

CAPTURE = str(sample_data_dir() / "binance" / "usdm_btcusdt_20240808.gz")
CONFIG = 'strategy_id = 3\n[params]\nmarket = "usdm"\n[backtest]\ncapital = 10000\nperiod_s = 10\n'
GRID = "fast=5,20 slow=50,100"


def backtest(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ttquant.core.cli", "backtest", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_a_grid_is_every_combination_in_order():
    grid = parse_grid("fast=5,10 slow=50,100 market=usdm flag=true x=0.5")
    assert grid == {"fast": [5, 10], "slow": [50, 100], "market": ["usdm"], "flag": [True], "x": [0.5]}
    assert grid_points({"a": [1, 2], "b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3},
                                                       {"a": 2, "b": 4}]
    for bad in ("fast", "fast=", "=5", "fast=5 fast=6", ""):
        with pytest.raises(ValueError, match="--sweep"):
            parse_grid(bad)
    rows = [{"point": 0, "statistics": {"sharpe": None}}, {"point": 1, "statistics": {"sharpe": -1.0}},
            {"point": 2, "statistics": {"sharpe": 2.0}}, {"point": 3, "statistics": {"sharpe": 2.0}}]
    assert [r["point"] for r in rank(rows, "sharpe")] == [2, 3, 1, 0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_runs_in_processes_and_on_a_dask_cluster_with_the_same_results(children, tmp_path):
    (tmp_path / "ema.toml").write_text(CONFIG)
    local = backtest("ema_cross", "--config", "ema.toml", "--data", CAPTURE, "--sweep", GRID, "--jobs", "2",
                     "--out", "local", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert "4 points" in local.stdout and "in 2 processes" in local.stdout
    doc = json.loads((tmp_path / "local" / "sweep.json").read_text())
    assert sorted(tuple(p["params"][k] for k in ("fast", "slow")) for p in doc["points"]) == \
        [(5, 50), (5, 100), (20, 50), (20, 100)]
    sharpes = [p["statistics"]["sharpe"] for p in doc["points"]]
    assert sharpes == sorted(sharpes, reverse=True) and len(set(p["orders_sent"] for p in doc["points"])) > 1
    # the table: a header and one line per point, best first
    table = [line.split() for line in local.stdout.splitlines()[1:6]]
    assert table[0][:3] == ["#", "fast", "slow"] and [row[0] for row in table[1:]] == ["1", "2", "3", "4"]

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    semaphores = _semaphores()
    cluster = [children.start("-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port,
                              "--no-dashboard", stdout=subprocess.DEVNULL, graceful=True,
                              stderr=open(tmp_path / "scheduler.log", "wb"))]
    for k in range(2):
        cluster.append(children.start("-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                      "--no-dashboard", "--name", f"w{k}", stdout=subprocess.DEVNULL, graceful=True,
                                      stderr=open(tmp_path / f"worker{k}.log", "wb")))
    from distributed import Client
    wait_for(lambda: _workers(address) == 2, timeout=60, what="the Dask scheduler and its two workers")
    remote = backtest("ema_cross", "--config", "ema.toml", "--data", CAPTURE, "--sweep", GRID, "--cluster",
                      address, "--out", "cluster", cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    assert f"on {address}" in remote.stdout
    assert (tmp_path / "cluster" / "sweep.json").read_bytes() == (tmp_path / "local" / "sweep.json").read_bytes()
    with Client(address, timeout="10s") as client:
        ran = client.run_on_scheduler(lambda dask_scheduler: {
            name: dict(tp.all_durations) for name, tp in dask_scheduler.task_prefixes.items()})
    assert ran["run_point"].get("compute", 0) > 0, ran      # the points were computed by the cluster's workers
    # stopped as systemd would stop them, the workers' nannies unlink their multiprocessing semaphores
    for proc in reversed(cluster):
        children.stop(proc)
    assert _semaphores() <= semaphores, sorted(_semaphores() - semaphores)


def _semaphores():
    return {e for e in os.listdir("/dev/shm") if e.startswith("sem.")}


def _workers(address):
    from distributed import Client
    try:
        with Client(address, timeout="2s") as client:
            return len(client.scheduler_info()["workers"])
    except OSError:
        return 0


def test_a_bad_grid_or_cluster_is_refused_in_one_line(tmp_path):
    (tmp_path / "ema.toml").write_text(CONFIG)
    p = backtest("ema_cross", "--config", "ema.toml", "--data", CAPTURE, "--sweep", "fastt=5,10", cwd=tmp_path)
    assert p.returncode == 2 and "params.fastt" in p.stderr, p.stderr
    p = backtest("ema_cross", "--config", "ema.toml", "--data", CAPTURE, "--sweep", "fast=5,10", "--cluster",
                 f"tcp://127.0.0.1:{_free_port()}", cwd=tmp_path)
    assert p.returncode == 1 and "--cluster" in p.stderr and "Traceback" not in p.stderr, p.stderr
