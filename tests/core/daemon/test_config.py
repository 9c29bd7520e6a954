"""Config schemas (core/daemon/config.py): every daemon's file refuses unknown keys at every
level and names the file, the key and the keys it knows; the package's examples are valid
and are what `render_example` (the demo, the tests, Ansible) starts from."""
import os
import subprocess
import sys
import tomllib

import pytest

from ttquant.core.daemon.config import ConfigError, example_text, load_config, parse_config, render_example
from ttquant.core.gateway.config import GatewayConfig
from ttquant.core.gateway.risk_config import RiskFile
from ttquant.core.md.config import MdConfig
from ttquant.sidecars.recorder.config import RecorderConfig
from ttquant.strategies.config import StrategyConfig

from ttq_testing import config_file

SCHEMAS = {"md": MdConfig, "gateway": GatewayConfig, "risk": RiskFile, "record": RecorderConfig,
           "strategy": StrategyConfig}
CONTEXT = {"md": {"instance": "binance"}, "gateway": {"instance": "binance"}, "record": {"instance": "binance"},
           "strategy": {"instance": "mm"}, "risk": {}}
CLI = [sys.executable, "-m", "ttquant.core.cli"]


@pytest.mark.parametrize("role", sorted(SCHEMAS))
def test_every_example_is_valid_and_shows_every_key_of_its_schema(role):
    text = example_text(role)
    doc = tomllib.loads(text)
    parse_config(doc, SCHEMAS[role], f"{role}.toml", **CONTEXT[role])
    import msgspec

    def keys(schema, prefix=""):
        out = set()
        for f in msgspec.inspect.type_info(schema).fields:
            name = f"{prefix}{f.encode_name}"
            sub = f.type
            sub = next((t for t in getattr(sub, "types", (sub,)) if isinstance(t, msgspec.inspect.StructType)), sub)
            if isinstance(sub, msgspec.inspect.StructType):
                out |= keys(sub.cls, name + ".")
            else:
                out.add(name)
        return out

    def present(d, prefix=""):
        out = set()
        for k, v in d.items():
            if isinstance(v, dict) and f"{prefix}{k}" not in ("params", "strategies", "balances", "instruments",
                                                                "venues"):
                out |= present(v, f"{prefix}{k}.")
            out.add(f"{prefix}{k}")
        return out
    shown = present(doc)
    missing = {k for k in keys(SCHEMAS[role]) if k not in shown}
    assert not missing, f"the {role} example does not show {sorted(missing)}"


@pytest.mark.parametrize("role,overrides,message", [
    # the typos a new user made (issue 9): each used to start with the defaults
    ("md", {"connection": {"backof_max_s": 3}},
     "connection.backof_max_s: unknown key (known: backoff_initial_s, backoff_max_s, exchange_info_refresh_s, "
     "idle_timeout_s, max_connection_age_s, rollover_overlap_s, snapshot_retry_s)"),
    ("md", {"markets": {"spot": {"stream": ["trade"]}}},
     "markets.spot.stream: unknown key (known: rest_url, snapshot_limit, streams, symbols, ws_url)"),
    ("strategy", {"venues": {"binance": {"ring": "x"}}}, "venues.binance.ring: unknown key (known: rings)"),
    ("md", {"markets": {"ftx": {"symbols": ["BTCUSDT"]}}}, "markets.ftx: unknown key (known: spot, usdm)"),
    ("md", {"connection": {"backoff_max_s": "30"}}, "connection.backoff_max_s: expected float, got str"),
    ("md", {"connection": {"idle_timeout_s": 0}}, "connection.idle_timeout_s: must be positive, got 0"),
    ("md", {"rings": {"tick_capacity": 1000}}, "rings.tick_capacity: a power of two, got 1000"),
    ("gateway", {"adapter": {"kind": "nyse"}}, "adapter.kind: one of sim, dry, binance, got 'nyse'"),
    ("gateway", {"loop": {"spin": 1}}, "loop.spin: unknown key (known: discover_interval_s, gc, spin_polls, wait)"),
    ("gateway", {"strategies": {"mm": "seven"}}, "strategies.mm: a strategy id in 1..2^32-1, got 'seven'"),
    ("gateway", {"jounral": {"path": "x"}},
     "jounral: unknown key (known: adapter, journal, loop, process, rings, risk, strategies, venue)"),
    ("record", {"journal": {"max_file_mb": 0}}, "journal.max_file_mb: 0 must be at least 1"),
    ("record", {"journal": {"dir": None}}, "journal.dir: missing"),
    ("risk", {"rate_limit": {"burts": 3}}, "rate_limit.burts: unknown key (known: burst, orders_per_s, "
                                           "strategy_burst, strategy_orders_per_s)"),
    ("strategy", {"runtime": {"on_error": "ignore"}}, "runtime.on_error: stop or continue, got 'ignore'"),
    # a strategy that declares its PARAMS has them checked too
    ("strategy", {"params": {"gama": 0.2}}, "params.gama: not a parameter of AvellanedaStoikov (its parameters: "
                                            "gamma, horizon_s, k, market,"),
    ("strategy", {"params": {"vol_window": 1.5}}, "params.vol_window: an integer (like its default 100), got 1.5"),
    ("strategy", {"process": {"cpus": [-1]}}, "process.cpus: CPU numbers are >= 0"),
    ("strategy", {"process": {"niceness": 3}}, "process.niceness: unknown key (known: cpus, log_level, priority, "
                                               "scheduling, startup_timeout_s)"),
])
def test_a_bad_key_or_value_is_refused_with_the_file_and_the_key(tmp_path, role, overrides, message):
    path = config_file(tmp_path / f"{role}.toml", role, overrides)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), SCHEMAS[role], **CONTEXT[role])
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    out = subprocess.run([*CLI, "config", "check", role, "--config", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_the_instance_names_the_default_venue_and_a_different_one_is_refused(tmp_path):
    path = config_file(tmp_path / "md.toml", "md", {"venue": "okx"})
    with pytest.raises(ConfigError, match="venue: 'okx', but md was started for 'binance'"):
        load_config(str(path), MdConfig, instance="binance")
    cfg = load_config(str(config_file(tmp_path / "gw.toml", "gateway", {"rings": {"name": None},
                                                                        "journal": {"path": None},
                                                                        "risk": {"file": None}})),
                      GatewayConfig, instance="binance")
    assert cfg.ring_name == "binance"
    assert cfg.journal_path == os.path.join(str(tmp_path), "binance.orders.journal")
    assert cfg.risk_file == os.path.join(str(tmp_path), "risk.binance.toml")


def test_render_replaces_adds_and_removes_keeping_the_comments():
    text = render_example("md", {"rings": {"name": "tokyo1"}, "markets": {"usdm": None},
                                 "connection": {"backoff_max_s": 5.0}, "limits": {"new_key": None},
                                 "threads": {"ws_cpus": [2, 3]}})
    doc = tomllib.loads(text)
    assert doc["rings"]["name"] == "tokyo1" and "usdm" not in doc["markets"]
    assert doc["connection"]["backoff_max_s"] == 5.0 and doc["threads"]["ws_cpus"] == [2, 3]
    assert 'name = "tokyo1"' in text and "# segments /ttq.<name>.ticks" in text      # the comment stays
    added = render_example("strategy", {"params": {"gamma": 0.25, "label": 'a "quoted" name'},
                                        "venues": {"okx": {"rings": "okx"}}})
    doc = tomllib.loads(added)
    assert doc["params"]["gamma"] == 0.25 and doc["params"]["label"] == 'a "quoted" name'
    assert doc["venues"] == {"binance": {"rings": "binance"}, "okx": {"rings": "okx"}}


def test_config_example_prints_what_check_accepts(tmp_path):
    out = subprocess.run([*CLI, "config", "example", "gateway", "--set-json",
                          '{"adapter": {"kind": "dry"}, "rings": {"name": "t1"}}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (tmp_path / "g.toml").write_text(out.stdout)
    check = subprocess.run([*CLI, "config", "check", "gateway", "--config", str(tmp_path / "g.toml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "ok (gateway)" in check.stdout
    bad = subprocess.run([*CLI, "config", "example", "gateway", "--set-json", '{"adapter": {"knd": "dry"}}'],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "adapter.knd: unknown key" in bad.stderr and bad.stdout == ""
