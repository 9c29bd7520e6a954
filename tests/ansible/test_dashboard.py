"""The Grafana dashboard the ttquant_monitoring role installs, and the metric names it and the
alert rules rely on.

metric-names.txt is the contract with `ttquant metrics`: every sample name (counters with their
_total, histograms as _bucket/_sum/_count) the dashboard or the rules may use, one per line. Every
name in an expression must be in it, and the dashboard shows every name in it. The expressions
are also parsed by promtool (recording rules written for the test), so a typo in PromQL fails.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import yaml

FILES = pathlib.Path(__file__).resolve().parents[2] / "ansible/roles/ttquant_monitoring/files"
DASHBOARD = FILES / "ttquant-dashboard.json"
RULES = FILES / "ttquant-alerts.yml"
CONTRACT = FILES / "metric-names.txt"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ["Market data", "Gateway", "Strategies", "Rings", "Sidecars"]

# Grafana's variables, as Grafana substitutes them before Prometheus sees the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$venue": ".*"}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    """The panels with queries (rows only group them)."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    for old, new in GRAFANA_VARIABLES.items():
        exprs = [e.replace(old, new) for e in exprs]
    return exprs


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def contract() -> list[str]:
    return CONTRACT.read_text().split("\n")[:-1]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges and label lists are gone, less durations, functions (a name before "("), keywords and numbers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    tokens = re.finditer(r"(?:\d+(?:ms|[smhdwy]))+|0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
                         r"|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr)
    for token in tokens:
        name, call = token.group(1), token.group(2)
        if name and not call and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def test_the_name_finder_reads_promql():
    expr = ('histogram_quantile(0.99, sum by (venue, le) (rate(ttq_a_bucket{venue=~"x|y", le!="1e3"}[5m])))'
            ' > 1e-3 and on (venue) ttq_b == 1 or vector(1) unless ignoring(process) ttq_c offset 5m'
            ' / on(venue) group_left(strategy) max without (role) (ttq_d:ratio)')
    assert metric_names(expr) == {"ttq_a_bucket", "ttq_b", "ttq_c", "ttq_d:ratio"}


def test_the_dashboard_is_grafana_json_with_our_variables():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    venue = variables["venue"]
    assert venue["type"] == "query" and venue["datasource"] == DATASOURCE
    assert venue["definition"] == venue["query"]["query"] == "label_values(ttq_up, venue)"


def test_the_dashboard_has_a_row_per_part_of_the_stack():
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert [r for r in rows if r in ROWS] == ROWS


def test_every_panel_queries_the_datasource_variable():
    assert len(panels()) >= 20
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert 'venue=~"$venue"' in target["expr"], (panel["title"], target["expr"])


def test_panels_do_not_overlap_and_ids_are_unique():
    board = dashboard()["panels"]
    assert len({p["id"] for p in board}) == len(board)
    cells = set()
    for p in board:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_the_contract_is_one_clean_list():
    names = contract()
    assert names and len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"ttq_[a-z0-9_]+", name), repr(name)


def test_every_metric_in_the_dashboard_and_the_rules_is_in_the_contract():
    known = set(contract())
    for expr in dashboard_exprs() + rule_exprs():
        used = metric_names(expr)
        assert used, expr
        assert used <= known, (sorted(used - known), expr)


def test_the_dashboard_shows_every_metric_of_the_contract():
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    histogram_parts = {n for n in contract() if n.endswith(("_sum", "_count"))}
    assert set(contract()) - histogram_parts - used == set()


def test_promtool_parses_every_dashboard_query(tmp_path):
    tool = shutil.which("promtool")
    assert tool, "promtool missing: `make test` installs Debian's prometheus package, which has it"
    exprs = dashboard_exprs()
    records = [{"record": f"ttquant_dashboard:panel_{i}", "expr": e} for i, e in enumerate(exprs)]
    rules = tmp_path / "dashboard.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
