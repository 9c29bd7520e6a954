"""`ttquant metrics` as a process: it finds every ring and telemetry segment without being told,
serves them as Prometheus text that prometheus-client's parser reads back, counters move between
scrapes, histograms are cumulative in seconds, it answers on the configured address only, and a
bad `listen` is refused naming the key and the file."""
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from ttquant.core.records import MARKET_EVENT_DTYPE, RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.core.telemetry.telemetry import TelemetryWriter, observe
from ttquant.sidecars.metrics.collector import exported_bounds
from ttquant.sidecars.metrics.daemon import parse_listen

from ttq_testing import config_file, free_port, scrape_metrics, wait_for


def scrape(url):
    return scrape_metrics(url), urllib.request.urlopen(url, timeout=5).read().decode()


def value(samples, name, **labels):
    got = [v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == str(x)
                                                                        for k, x in labels.items())]
    assert len(got) == 1, f"{name}{labels}: {len(got)} samples"
    return got[0]


@pytest.fixture
def metrics(children, tmp_path):
    port = free_port()
    cfg = config_file(tmp_path / "metrics.toml", "metrics", {"listen": f"127.0.0.1:{port}",
                                                              "process": {"scheduling": "other"}})
    log = tmp_path / "metrics.log"
    proc = children.start("-m", "ttquant.core.cli", "metrics", "--config", cfg, stdout=subprocess.DEVNULL,
                          stderr=open(log, "wb"))
    url = f"http://127.0.0.1:{port}/metrics"

    def up():
        try:
            return scrape(url)
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, log.read_text()
            return None
    wait_for(up, timeout=30, what="ttquant metrics serving")
    yield proc, url, port, log


def test_every_segment_is_found_and_counters_move(venue, ring, metrics):
    proc, url, port, log = metrics
    ticks = BroadcastWriter(ring("ticks"), RecordType.MARKET_EVENT, 1024)
    ring("telemetry", "strategy-mm")
    tel = TelemetryWriter(venue, "strategy-mm", "strategy", labels={"strategy": "mm"})
    try:
        counts = tel.counters(["events_total", "orders_total{side=buy}"])
        pos = tel.gauges(["position{instrument=7}"], scale=8)
        hist = tel.histogram("handler_seconds")
        counts[0] = 10
        pos[0] = -25_000_000
        for v in (900, 1500, 3_000_000):
            observe(hist, v)
        first, _ = scrape(url)
        who = {"venue": venue, "role": "strategy", "process": "strategy-mm"}
        assert value(first, "ttq_up", **who) == 1
        assert value(first, "ttq_strategy_events_total", **who, strategy="mm") == 10
        assert value(first, "ttq_strategy_orders_total", side="buy", venue=venue) == 0
        assert value(first, "ttq_strategy_position", instrument=7, venue=venue) == -0.25
        assert value(first, "ttq_strategy_handler_seconds_count", venue=venue) == 3
        assert value(first, "ttq_strategy_handler_seconds_sum", venue=venue) == pytest.approx(3_002_400e-9)
        les = sorted((float(dict(ls)["le"]), v) for (n, ls), v in first.items()
                     if n == "ttq_strategy_handler_seconds_bucket" and dict(ls)["venue"] == venue)
        assert les[-1] == (float("inf"), 3) and [v for _, v in les] == sorted(v for _, v in les)
        assert dict(les)[1024e-9] == 1 and dict(les)[2048e-9] == 2 and dict(les)[4194304e-9] == 3
        assert len(les) == len(exported_bounds()) + 1
        ring_labels = {"venue": venue, "ring": "ticks", "kind": "broadcast", "record": "market_event"}
        assert value(first, "ttq_ring_write_position", **ring_labels) == 0
        assert value(first, "ttq_ring_writer_up", **ring_labels) == 1
        assert value(first, "ttq_ring_capacity", **ring_labels) == 1024
        ticks.push_many(np.zeros(5, MARKET_EVENT_DTYPE))
        counts[0] += 5
        tel.heartbeat()
        second, _ = scrape(url)
        assert value(second, "ttq_strategy_events_total", venue=venue) == 15
        assert value(second, "ttq_ring_write_position", **ring_labels) == 5
    finally:
        tel.close()
        ticks.close()
    third, _ = scrape(url)
    assert value(third, "ttq_up", venue=venue, role="strategy") == 0       # the owner is gone: down, counts kept
    assert value(third, "ttq_strategy_events_total", venue=venue) == 15
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, log.read_text()


def test_it_answers_on_the_configured_address_only(metrics):
    proc, url, port, log = metrics
    for host in ("127.0.0.2", "::1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam) as s:
            s.settimeout(2)
            try:
                assert s.connect_ex((host, port)) != 0, f"{host}:{port} answered"
            except OSError:
                pass                    # no IPv6 here at all: unreachable too
    assert "ttq_metrics_scrape_seconds" in scrape(url)[1]


def test_a_bad_listen_is_refused_naming_the_key_and_the_file(tmp_path, children):
    for bad in ("0.0.0.0", "example.org:9108", "127.0.0.1:99999"):
        cfg = config_file(tmp_path / "metrics.toml", "metrics", {"listen": bad})
        proc = children.start("-m", "ttquant.core.cli", "metrics", "--config", cfg, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2 and "listen" in err.decode() and str(cfg) in err.decode(), err
    assert parse_listen("[::1]:9108") == ("::1", 9108) and parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
