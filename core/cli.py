"""The `ttquant` command: one entry point, a subcommand per job, --help on each."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main"]

# numpy's OpenBLAS starts a worker thread per core that nobody pins and spins after start;
# the daemons do no linear algebra, so they keep only the threads they name and pin.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _age(ns):
    if ns is None:
        return "never"
    s = ns / 1e9
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def _table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _jsonable(info):
    return {k: v for k, v in info.items() if k != "header"}


def cmd_rings_ls(args) -> int:
    from ttquant.core.rings import RingError
    from ttquant.core.rings.inspect import file_infos, ring_infos
    from ttquant.core.rings.names import ring_name
    from ttquant.core.telemetry.telemetry import read_telemetry

    infos = ring_infos()
    if args.venue:
        infos = [i for i in infos if i["name"].startswith(ring_name(args.venue, "x")[:-1])]
    for i in infos:
        if i.get("record") == "telemetry":
            try:
                i["labels"] = read_telemetry(i["name"])["labels"]
            except (RingError, OSError, ValueError) as exc:     # being made or unmade: shown, not fatal
                i["labels"], i["labels_error"] = {}, str(exc)
    files = file_infos(args.venue or None)
    if args.json:
        print(json.dumps([_jsonable(i) for i in infos] + files, indent=1))
        return 0
    if not infos and not files:
        print("no TTQuant rings or files in /dev/shm" + (f" for venue {args.venue}" if args.venue else ""))
        return 0
    rows = []
    for i in infos:
        if "error" in i:
            rows.append([i["name"], "?", "-", "-", "-", "-", "-", "-", "-", "-", i["error"]])
            continue
        notes = [f"{i['rejected_full']} refused"] if i.get("rejected_full") else []
        if "labels" in i:
            notes.append(", ".join(f"{k} {v}" for k, v in i["labels"].items()) or i.get("labels_error", ""))
        rows.append([
            i["name"], i["kind"], i["record"], i["capacity"], i["writer_pid"] or "-",
            "yes" if i["writer_alive"] else "no", i["epoch"], i["write_position"],
            _age(i["heartbeat_age_ns"]), i.get("read_position", "-"), "; ".join(notes),
        ])
    if rows:
        print(_table(rows, ["NAME", "KIND", "RECORD", "CAPACITY", "WRITER", "ALIVE", "EPOCH",
                            "WRITE_POS", "HEARTBEAT", "READ_POS", "NOTE"]))
    if files:
        print("\n" if rows else "", end="")
        print(_table([[f["name"], _FILE_KINDS[f["kind"]], _file_state(f)] for f in files],
                     ["FILE", "WHAT", "STATE"]))
    return 0


_FILE_KINDS = {"instruments": "instrument table", "kill_switch": "kill switch", "lock": "instance lock",
               "file": "file"}


def _file_state(f) -> str:
    from ttquant.core.rings.inspect import iso_ns
    if "error" in f:
        return f"unreadable: {f['error']}"
    if f["kind"] == "instruments":
        return f"{f['count']} instrument{'s' * (f['count'] != 1)} of {f['venue']}"
    if f["kind"] == "kill_switch":
        if not f["changes"]:
            return "released (never switched)"
        return (f"{'ENGAGED' if f['engaged'] else 'released'} by {f['who']} at {iso_ns(f['ts_ns'])}"
                + (f" ({f['reason']})" if f["reason"] else ""))
    if f["kind"] == "lock":
        role = f["role"] + (f" {f['instance']}" if f["instance"] else "")
        if not f["held"]:
            return f"{role}: free (left by a process that stopped)"
        return f"{role}: held by pid {f['pid'] or '?'}" + (f" ({f['command']})" if f["command"] else "")
    return ""


def cmd_rings_inspect(args) -> int:
    from ttquant.core.rings.inspect import RecordDecoder, last_records, load_instruments, ring_info, rings_of

    kind = ring_info(args.name)
    if kind["kind"] == "board" and kind["record"] == "book_top":
        return _inspect_board(args)
    if kind["kind"] == "board" and kind["record"] == "telemetry":
        return _inspect_telemetry(args, kind)
    info, records = last_records(args.name, args.count)
    record_type = info["header"]["record_type"]
    table, why = load_instruments(rings_of(args.name))
    decoder = RecordDecoder(table)
    if args.json:
        out = _jsonable(info)
        out["instruments"] = None if table is None else {"venue": table.venue, "count": len(table)}
        if why:
            out["instruments_missing"] = why
        out["records"] = [{"position": p, **decoder.json(record_type, r)} for p, r in zip(info["positions"], records)]
        print(json.dumps(out, indent=1, default=str))
        return 0
    h = info["header"]
    print(f"ring {info['name']}: {info['kind']} of {info['record']} "
          f"({info['record_size']} bytes in {h['slot_size']}-byte slots), capacity {info['capacity']}")
    print(f"  writer      pid {info['writer_pid'] or '-'} {'alive' if info['writer_alive'] else 'not running'}, "
          f"epoch {info['epoch']}, heartbeat {_age(info['heartbeat_age_ns'])} ago")
    print(f"  position    write {info['write_position']}"
          + (f", read {info['read_position']} ({info['unread']} unread), reader pid "
             f"{info['reader_pid'] or '-'} {'alive' if info['reader_alive'] else 'not running'}"
             if "read_position" in info else ""))
    print(f"  counters    rejected full {info['rejected_full']}, wakeups {info['wakeups']}, "
          f"a reader asleep: {'yes' if info['sleep_announced'] else 'no'}, writer fences: "
          f"{'every publish' if info['writer_fences'] else 'no (membarrier)'}")
    print(f"  created     {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h['created_ns'] / 1e9))}, "
          f"layout version {h['layout_version']}")
    if why:
        print(f"  instruments none ({why}): instrument ids and raw fixed-point integers below")
    print(f"last {len(records)} records:")
    for position, raw in zip(info["positions"], records):
        print(f"  {position:>12}  {decoder.text(record_type, raw)}")
    return 0


def _inspect_board(args) -> int:
    from ttquant.core.book.book_board import BookBoard
    from ttquant.core.rings.inspect import decimal_text, iso_ns, load_instruments, ring_info, rings_of

    info = ring_info(args.name)
    with BookBoard(args.name) as board:
        tops = [board.read(i) for i in board.instruments()[:max(args.count, 0)]]
        depth = board.depth
    table, why = load_instruments(rings_of(args.name))

    def levels(inst, side):
        if inst is None:
            return [[int(p), int(q)] for p, q in side]
        return [[decimal_text(p, inst.price_precision), decimal_text(q, inst.size_precision)] for p, q in side]

    if args.json:
        out = _jsonable(info)
        if why:
            out["instruments_missing"] = why
        out["books"] = []
        for t in tops:
            inst = table.get(t.instrument_id) if table is not None else None
            book = dict(t._asdict(), bids=t.bids.tolist(), asks=t.asks.tolist(),
                        ts_exchange_iso=iso_ns(t.ts_exchange), ts_pub_iso=iso_ns(t.ts_pub))
            if inst is not None:
                book.update(symbol=inst.symbol, instrument=inst.label, bids_decimal=levels(inst, t.bids),
                            asks_decimal=levels(inst, t.asks))
            out["books"].append(book)
        print(json.dumps(out, indent=1))
        return 0
    print(f"book board {info['name']}: {info['write_position']} of {info['capacity']} instruments, "
          f"top {depth} levels each")
    print(f"  writer      pid {info['writer_pid'] or '-'} {'alive' if info['writer_alive'] else 'not running'}, "
          f"epoch {info['epoch']}, heartbeat {_age(info['heartbeat_age_ns'])} ago")
    if why:
        print(f"  instruments none ({why}): instrument ids and raw fixed-point integers below")
    for t in tops:
        inst = table.get(t.instrument_id) if table is not None else None
        name = inst.label if inst is not None else f"instrument {t.instrument_id}"
        bid, ask = (" x ".join(map(str, side[0])) if len(side) else "-"
                    for side in (levels(inst, t.bids), levels(inst, t.asks)))
        print(f"  {name:<20}  {'synced' if t.synced else 'REBUILDING'}  update {t.update_id}  "
              f"bid {bid}  ask {ask}  levels {len(t.bids)}/{len(t.asks)}  resets {t.resets}  "
              f"at {iso_ns(t.ts_pub) or '-'}")
    return 0


def _inspect_telemetry(args, info) -> int:
    from ttquant.core.telemetry.telemetry import bucket_quantile, read_telemetry
    got = read_telemetry(info["name"])
    if args.json:
        for s in got["series"]:
            if "buckets" in s:
                s["buckets"] = {int(k): int(v) for k, v in enumerate(s["buckets"]) if v}
        print(json.dumps({**_jsonable(info), **got}, indent=1, default=str))
        return 0
    who = ", ".join(f"{k} {v}" for k, v in got["labels"].items())
    print(f"telemetry {info['name']}: {who}; writer pid {info['writer_pid'] or '-'} "
          f"{'alive' if info['writer_alive'] else 'not running'}, epoch {info['epoch']}, "
          f"heartbeat {_age(info['heartbeat_age_ns'])} ago")
    for s in got["series"]:
        labels = ",".join(f"{k}={v}" for k, v in s["labels"].items())
        name = s["name"] + (f"{{{labels}}}" if labels else "")
        if s["kind"] == "histogram":
            unit = 10.0 ** s["scale"]
            qs = ", ".join(f"p{q * 100:g} < {_seconds(bucket_quantile(s['buckets'], q), unit)}"
                           for q in (0.5, 0.99, 0.999))
            print(f"  {name:<60} {s['count']} samples" + (f", {qs}, mean {_seconds(s['sum'] / s['count'], unit)}"
                                                           if s["count"] else ""))
        elif s["value"] or args.all:
            print(f"  {name:<60} {s['value']}")
    return 0


def _seconds(value, unit):
    if value is None:
        return "overflow"
    v = value * unit
    return f"{v * 1e9:.0f} ns" if v < 1e-6 else f"{v * 1e6:.1f} us" if v < 1e-3 else f"{v * 1e3:.1f} ms"


def cmd_rings_rm(args) -> int:
    if args.venue:
        if args.names:
            print("ttquant rings rm: give ring names or --venue, not both", file=sys.stderr)
            return 2
        return _rm_venue(args.venue, args.force)
    if not args.names:
        print("ttquant rings rm: give ring names or --venue", file=sys.stderr)
        return 2
    from ttquant.core.rings import RingError, RingSegment, unlink

    status = 0
    for name in args.names:
        try:
            seg = RingSegment.attach(name, read_only=True)
            alive = seg.writer_alive()
            seg.close()
        except (RingError, OSError):
            alive = False
        if alive and not args.force:
            print(f"{name}: has a live writer; not removed (use --force)", file=sys.stderr)
            status = 1
            continue
        if unlink(name):
            print(f"removed {name}")
        else:
            print(f"{name}: no such ring", file=sys.stderr)
            status = 1
    return status


def _rm_venue(venue, force) -> int:
    """Every file of a stopped stack, or nothing while any of it is in use (unless forced)."""
    from ttquant.core.rings.inspect import stack_in_use
    from ttquant.core.rings.names import check_rings_name, stack_entries

    check_rings_name(venue)
    entries = stack_entries(venue)
    if not entries:
        print(f"ttquant rings rm: nothing of venue {venue} in /dev/shm", file=sys.stderr)
        return 1
    busy = stack_in_use(venue)
    if busy and not force:
        for path, why in busy:
            print(f"{path}: {why}", file=sys.stderr)
        print(f"ttquant rings rm: venue {venue} is in use; removed nothing (stop it first, or --force)",
              file=sys.stderr)
        return 1
    status = 0
    for path in entries:
        try:
            os.unlink(path)
            print(f"removed {path}")
        except FileNotFoundError:
            pass                    # gone meanwhile (a daemon's clean exit removes its lock)
        except OSError as exc:
            print(f"{path}: {exc.strerror}; not removed", file=sys.stderr)
            status = 1
    return status


def cmd_demo(args) -> int:
    if args.md_only:
        from ttquant.core.md.demo import run_md_demo
        return run_md_demo(seconds=args.seconds or 20.0, speed=args.speed, synthetic=args.synthetic)
    from ttquant.core.trading_demo import run_trading_demo
    return run_trading_demo(seconds=args.seconds or 30.0, speed=args.speed, strategy=args.strategy,
                            synthetic=args.synthetic, adapter=args.adapter)


def cmd_rings_demo(args) -> int:
    from ttquant.core.demo import run_demo

    return run_demo(seconds=args.seconds, venue=args.venue)


# role -> the daemon class (module:Class) the service runner runs (core/daemon/runner.py)
DAEMONS = {
    "md": "ttquant.core.md.daemon:MdDaemon",
    "gateway": "ttquant.core.gateway.daemon:Gateway",
    "record": "ttquant.sidecars.recorder.daemon:Recorder",
    "ship": "ttquant.sidecars.db.daemon:Shipper",
    "metrics": "ttquant.sidecars.metrics.daemon:Metrics",
    "strategy": "ttquant.strategies.runtime:StrategyDaemon",
}
# role -> its config schema, for `ttquant config`
SCHEMAS = {
    "md": "ttquant.core.md.config:MdConfig",
    "gateway": "ttquant.core.gateway.config:GatewayConfig",
    "risk": "ttquant.core.gateway.risk_config:RiskFile",
    "record": "ttquant.sidecars.recorder.config:RecorderConfig",
    "ship": "ttquant.sidecars.db.daemon:ShipperConfig",
    "metrics": "ttquant.sidecars.metrics.daemon:MetricsConfig",
    "strategy": "ttquant.strategies.config:StrategyConfig",
}
MD_VENUES = ("binance",)            # venues with a market-data daemon
GATEWAY_VENUES = ("binance",)


def _load(path: str):
    import importlib
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _run_daemon(role: str, instance: str, config: str | None) -> int:
    from ttquant.core.daemon.runner import run_daemon
    return run_daemon(_load(DAEMONS[role]), instance, config)


def cmd_md(args) -> int:
    return _run_daemon("md", args.venue, args.config)


def cmd_venue_sim(args) -> int:
    # reached only without options (main hands `venue-sim binance ...` to the venue's own parser)
    from ttquant.core.sim.binance_venue import main as venue_main
    return venue_main([])


def cmd_gateway(args) -> int:
    return _run_daemon("gateway", args.venue, args.config)


def cmd_strategy_run(args) -> int:
    return _run_daemon("strategy", args.name, args.config)


def cmd_record(args) -> int:
    return _run_daemon("record", args.venue, args.config)


def cmd_config_example(args) -> int:
    import tomllib

    from ttquant.core.daemon.config import ConfigError, parse_config, render_example
    try:
        overrides = json.loads(args.set_json) if args.set_json else {}
        if not isinstance(overrides, dict):
            raise ConfigError("--set-json: a JSON object, e.g. '{\"rings\": {\"name\": \"binance\"}}'")
        text = render_example(args.role, overrides)
        doc = tomllib.loads(text)
        # checked as the daemon will check it (a strategy's class is loaded by `config check`)
        parse_config(doc, _load(SCHEMAS[args.role]), f"{args.role} example", **_context(args.role, doc, False))
    except json.JSONDecodeError as exc:
        print(f"ttquant config: --set-json: not JSON: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, tomllib.TOMLDecodeError) as exc:
        print(f"ttquant config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _context(role, doc, load_class=True):
    if role == "strategy":
        return {"instance": doc.get("name", ""), "load_class": load_class}
    if role in ("md", "gateway"):
        return {"instance": doc.get("venue") or "binance"}
    if role == "record":
        return {"instance": (doc.get("rings") or {}).get("name", "") if isinstance(doc.get("rings"), dict) else ""}
    return {}


def cmd_config_check(args) -> int:
    from ttquant.core.daemon.config import ConfigError, default_config_path, load_config, read_toml
    path = args.config or (default_config_path(args.role, args.instance) if args.instance else None)
    if path is None:
        print("ttquant config check: give --config FILE or an INSTANCE (e.g. binance)", file=sys.stderr)
        return 2
    try:
        doc = read_toml(path)
        context = _context(args.role, doc)
        if args.instance and args.role != "risk":
            context["instance"] = args.instance
        load_config(path, _load(SCHEMAS[args.role]), **context)
    except ConfigError as exc:
        print(f"ttquant config check: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: ok ({args.role})")
    return 0


def cmd_replay(args) -> int:
    from ttquant.core.daemon.runner import ServiceRunner
    from ttquant.core.journal.replay import Replay, ReplayConfig, parse_time
    try:
        try:
            speed = 0.0 if args.speed == "max" else float(args.speed)
        except ValueError:
            raise ValueError(f"--speed: 1, a factor like 10, or max; got {args.speed!r}") from None
        cfg = ReplayConfig(directory=args.directory, speed=speed, rings=args.rings or "",
                           kinds=[k for k in args.kinds.split(",") if k],
                           from_ns=parse_time(args.from_time) if args.from_time else 0,
                           to_ns=parse_time(args.to_time) if args.to_time else 0,
                           wait_for_strategies=args.wait_for_strategy)
    except ValueError as exc:
        print(f"ttquant replay: {exc}", file=sys.stderr)
        return 2
    return ServiceRunner("replay", cfg.rings or "journal").run(Replay, cfg=cfg)


def cmd_backtest(args) -> int:
    from ttquant.strategies.backtest.run import run_backtest_command
    return run_backtest_command(args)


def cmd_db_ship(args) -> int:
    return _run_daemon("ship", args.venue, args.config)


def cmd_metrics(args) -> int:
    return _run_daemon("metrics", "", args.config)


def cmd_db_migrate(args) -> int:
    if not args.dsn:
        print("ttquant db migrate: no database: --dsn or $TTQ_DATABASE_URL", file=sys.stderr)
        return 2
    import psycopg

    from ttquant.sidecars.db.migrate import MigrationError, migrate
    try:
        with psycopg.connect(args.dsn, autocommit=True, connect_timeout=10) as conn:
            done = migrate(conn, timescale=False if args.plain else None)
    except MigrationError as exc:
        print(f"ttquant db migrate: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"ttquant db migrate: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
        return 1
    for m in done:
        print(f"applied {m.label}")
    if not done:
        print("the schema is up to date")
    return 0


def cmd_journal_ls(args) -> int:
    from ttquant.core.journal import JournalFileError, journal_directories, journal_files
    if not os.path.exists(args.directory):
        print(f"ttquant journal: {args.directory}: no such directory", file=sys.stderr)
        return 2
    if not os.path.isdir(args.directory):
        print(f"ttquant journal: {args.directory}: not a directory (give a ring's journal directory or one "
              f"above it)", file=sys.stderr)
        return 2
    directories = journal_directories(args.directory)
    if not directories:
        print(f"{args.directory}: no journal files here or below", file=sys.stderr)
        return 1
    for n, directory in enumerate(directories):
        try:
            files = journal_files(directory)
        except JournalFileError as exc:
            print(f"ttquant journal: {exc}", file=sys.stderr)
            return 2
        if len(directories) > 1:
            print(("\n" if n else "") + f"{directory}:")
        rows, previous = [], None
        for f in files:
            gap = f.first_position - previous.next_position if previous is not None else 0
            rows.append([os.path.basename(f.path), f.ring_name, str(f.first_position),
                         str(f.next_position - 1) if f.count else "-", str(f.count),
                         str(gap) if gap > 0 else "", str(f.torn_bytes or "")])
            previous = f
        print(_table(rows, ["file", "ring", "first", "last", "records", "gap before", "torn bytes"]))
    return 0


def cmd_journal_export(args) -> int:
    from ttquant.core.journal.export import ExportError, export_journal
    from ttquant.core.journal.replay import parse_time
    try:
        written = export_journal(args.directory, args.out, args.format,
                                 parse_time(args.from_time) if args.from_time else 0,
                                 parse_time(args.to_time) if args.to_time else 0)
    except (ExportError, ValueError) as exc:
        print(f"ttquant journal export: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def cmd_kill(args) -> int:
    from ttquant.core.daemon.instance_lock import lock_holder
    from ttquant.core.gateway.kill_switch import KillSwitch
    from ttquant.core.rings.names import check_rings_name, instance_lock_file
    try:
        check_rings_name(args.venue)
    except ValueError as exc:
        print(f"ttquant kill: {exc}", file=sys.stderr)
        return 2
    gateway = lock_holder(instance_lock_file(args.venue, "gateway"))
    running = f"gateway pid {gateway}" if gateway else ("a gateway" if gateway == 0 else "no gateway running")
    if args.status:
        try:
            ks = KillSwitch(args.venue, create=False)
        except FileNotFoundError:
            print(f"kill switch {args.venue}: never set ({running})")
            return 0
        try:
            state = ks.read()
        finally:
            ks.close()
        print(_kill_line(args.venue, state) + f" ({running})")
        return 0
    if gateway is None and not args.force:
        print(f"ttquant kill: no gateway of {args.venue!r} is running (no stack by that name?); nothing "
              f"changed. --force sets the switch anyway, for a gateway that starts later.", file=sys.stderr)
        return 1
    ks = KillSwitch(args.venue)
    try:
        state = ks.set(not args.release, args.reason)
    finally:
        ks.close()
    print(_kill_line(args.venue, state) + f" ({running})")
    return 0


def _kill_line(venue, state):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.ts_ns / 1e9))
    return (f"kill switch {venue}: {'ENGAGED' if state.engaged else 'released'} by {state.who} at {when}"
            + (f" ({state.reason})" if state.reason else ""))


EXIT_CODES = """exit codes:
  0  stopped on request (SIGTERM, SIGINT)
  1  internal error (a bug: the traceback is in the log)
  2  configuration or usage error (the file and the key are named)
  3  a strategy stopped by its own handler's error
  4  another instance already runs (its lock is held)
  5  what it needs did not come up within [process] startup_timeout_s"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ttquant")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttquant", description="TTQuant: low-latency crypto trading over shared-memory rings.")
    parser.add_argument("--version", action="version", version=f"ttquant {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rings = sub.add_parser("rings", help="list, inspect and remove shared-memory rings",
                           description="Shared-memory rings in /dev/shm (/ttq.<venue>.<kind>[.<owner>]).")
    rings_sub = rings.add_subparsers(dest="rings_command", metavar="SUBCOMMAND", required=True)
    ls = rings_sub.add_parser("ls", help="every segment: rings, telemetry, instrument table, kill switch, locks",
                              description="List every TTQuant ring and telemetry segment with its writer and "
                              "positions, then the files beside them: the instrument table, the kill switch and "
                              "the instance locks (held or free, and by whom).")
    ls.add_argument("--venue", help="only this venue's segments and files")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_rings_ls)
    inspect = rings_sub.add_parser("inspect", help="header and the last records of one ring",
                                   description="Print a ring's header and decode its last records for people: "
                                   "enum names, symbols, prices and quantities at the instrument's precision, "
                                   "UTC times (from the stack's instrument table; raw ids and integers "
                                   "without it). --json keeps the raw fields and adds the decoded ones.")
    inspect.add_argument("name", help="ring name, e.g. /ttq.binance.ticks")
    inspect.add_argument("-n", "--count", type=int, default=10, help="how many records (default 10)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--all", action="store_true", help="telemetry: counters at zero too")
    inspect.set_defaults(func=cmd_rings_inspect)
    rm = rings_sub.add_parser("rm", help="unlink rings, or every file of a stopped venue (refuses live ones)",
                              description="Remove rings from /dev/shm, or with --venue every file of a stopped "
                              "venue: rings, telemetry, instrument table, kill switch, instance locks. Refuses "
                              "a ring with a live writer (or SPSC reader), a held lock or an engaged kill "
                              "switch. Processes that mapped a ring keep it.")
    rm.add_argument("names", nargs="*", metavar="NAME", help="ring names, e.g. /ttq.binance.ticks")
    rm.add_argument("--venue", help="every file of this venue's stack instead of names")
    rm.add_argument("--force", action="store_true", help="remove even what is in use")
    rm.set_defaults(func=cmd_rings_rm)

    md = sub.add_parser("md", help="run a market-data daemon", description="Market data of one venue "
                        "into the tick ring, books and the book board (systemd notify when run by systemd).",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    md.add_argument("venue", choices=MD_VENUES, help="the venue (Binance: spot and USDT-M futures)")
    md.add_argument("--config", help="TOML file (default /etc/ttquant/md.VENUE.toml; `ttquant config example md`)")
    md.set_defaults(func=cmd_md)

    sim = sub.add_parser("venue-sim", help="a simulated venue on 127.0.0.1",
                         description="A simulated venue speaking the venue's own public formats.")
    sim_sub = sim.add_subparsers(dest="venue", metavar="VENUE", required=True)
    # its options are the venue's own parser's (core/sim/binance_venue.build_parser): main hands them over
    sim_sub.add_parser("binance", help="Binance: replay of the captures, market data and order entry "
                                       "(`ttquant venue-sim binance --help` for its options)")
    sim_binance = sim_sub.choices["binance"]
    sim_binance.set_defaults(func=cmd_venue_sim)

    gateway = sub.add_parser("gateway", help="run a gateway: orders checked, journaled, sent",
                             description="Every strategy's order ring in; validation, risk, the order state "
                                         "machine and journal; the venue adapter; exec reports out.",
                             epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    gateway.add_argument("venue", choices=GATEWAY_VENUES, help="the venue (adapter.kind in the config: sim or dry)")
    gateway.add_argument("--config", help="TOML file (default /etc/ttquant/gateway.VENUE.toml; "
                                          "`ttquant config example gateway`)")
    gateway.set_defaults(func=cmd_gateway)

    strategy = sub.add_parser("strategy", help="run a strategy", description="One strategy per process.")
    st_sub = strategy.add_subparsers(dest="strategy_command", metavar="SUBCOMMAND", required=True)
    st_run = st_sub.add_parser("run", help="run one strategy live",
                               description="Reads the tick and exec rings, writes its own order ring.",
                               epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    st_run.add_argument("name", help="the strategy's name (its order ring's owner)")
    st_run.add_argument("--config", help="TOML file (default /etc/ttquant/strategy.NAME.toml; "
                                         "`ttquant config example strategy`)")
    st_run.set_defaults(func=cmd_strategy_run)

    record = sub.add_parser("record", help="record a venue's rings into journal files",
                            description="The recorder sidecar: ticks and exec reports into journal files.",
                            epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    record.add_argument("venue", help="the venue whose rings it records")
    record.add_argument("--config", help="TOML file (default /etc/ttquant/record.VENUE.toml; "
                                         "`ttquant config example record`)")
    record.set_defaults(func=cmd_record)

    journal = sub.add_parser("journal", help="look at journal files")
    journal_sub = journal.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", required=True)
    journal_ls = journal_sub.add_parser("ls", help="journal files: positions, records, gaps, torn tails",
                                        description="Every ring's journal files at or below DIR.")
    journal_ls.add_argument("directory", help="a ring's journal directory (/var/lib/ttquant/journal/binance.ticks) "
                                              "or one above it (/var/lib/ttquant/journal)")
    journal_ls.set_defaults(func=cmd_journal_ls)
    export = journal_sub.add_parser("export", help="journal files as Parquet or CSV tables for research tools",
                                    description="One file per recorded ring and instrument (<out>/<kind>.<SYMBOL>."
                                                "<market>.<format>), prices and quantities as exact decimals at the "
                                                "instrument's precision (stated in each column's metadata).")
    export.add_argument("directory", help="a journal directory or one ring's")
    export.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    export.add_argument("--out", default="export", help="where the files go (default ./export)")
    export.add_argument("--from", dest="from_time", metavar="TIME", help="from this ts_pub (ISO 8601 or ns)")
    export.add_argument("--to", dest="to_time", metavar="TIME", help="before this ts_pub")
    export.set_defaults(func=cmd_journal_export)

    replay = sub.add_parser("replay", help="recorded journal files back into the rings",
                            description="The recorded rings (ticks, exec reports) back into a stack's rings, with "
                                        "the original gaps between records at --speed 1, N times shorter at N, none "
                                        "at max; the instrument table as recorded. Strategies and the gateway (sim "
                                        "adapter) run against it as against md.",
                            epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    replay.add_argument("directory", help="a journal directory (/var/lib/ttquant/journal) or one ring's")
    replay.add_argument("--speed", default="1", help="1 (as recorded), a factor (10), or max (default 1)")
    replay.add_argument("--from", dest="from_time", metavar="TIME", help="start at this time (ISO 8601, UTC "
                                                                         "unless it says; or ns)")
    replay.add_argument("--to", dest="to_time", metavar="TIME", help="stop before this time")
    replay.add_argument("--rings", help="the stack to replay into (default: the recorded one)")
    replay.add_argument("--kinds", default="ticks,exec",
                        help="what to replay of what was recorded (default ticks,exec; ticks alone when a "
                             "gateway writes the exec ring)")
    replay.add_argument("--wait-for-strategy", action="append", default=[], metavar="NAME",
                        help="hold the first record until this strategy reads the stack's rings (repeatable)")
    replay.set_defaults(func=cmd_replay)

    backtest = sub.add_parser("backtest", help="a strategy over recorded data, on the live kernel",
                              description="The strategy driven by the live dispatch over a journal or a capture, "
                                          "its orders through the gateway's checks and order state machine to the "
                                          "sim venue's matcher; result.json (the same inputs give the same bytes).",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    backtest.add_argument("strategy", help="an example (ema_cross, ...), package.module:Class or path/file.py:Class")
    backtest.add_argument("--config", help="the strategy's config: [params], strategy_id, [backtest] (fill model, "
                                           "risk file, capital)")
    backtest.add_argument("--data", required=True, help="a journal directory, or a capture file of data/binance")
    backtest.add_argument("--from", dest="from_time", metavar="TIME", help="from this time (ISO 8601 or ns)")
    backtest.add_argument("--to", dest="to_time", metavar="TIME", help="before this time")
    backtest.add_argument("--out", default="backtest-out", help="where result.json goes (default ./backtest-out)")
    backtest.add_argument("--no-report", action="store_true", help="result.json only, no report.html")
    backtest.add_argument("--sweep", metavar="GRID", help="a parameter grid, 'fast=5,10,20 slow=50,100': every point "
                                                          "run, ranked, OUT/sweep.json")
    backtest.add_argument("--jobs", type=int, default=0, help="sweep processes on this machine (default: one per CPU)")
    backtest.add_argument("--cluster", metavar="ADDRESS", help="run the sweep on a Dask scheduler (tcp://host:8786)")
    backtest.add_argument("--rank-by", default="sharpe", help="the statistic a sweep is ranked by (default sharpe)")
    backtest.set_defaults(func=cmd_backtest)

    db = sub.add_parser("db", help="the PostgreSQL / TimescaleDB schema",
                        description="The schema's migrations (sql/migrations), applied in order, each once.")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    db_migrate = db_sub.add_parser("migrate", help="apply the migrations the database lacks (twice changes nothing)")
    db_migrate.add_argument("--dsn", default=os.environ.get("TTQ_DATABASE_URL", ""),
                            help="libpq connection string or URL (default $TTQ_DATABASE_URL)")
    db_migrate.add_argument("--plain", action="store_true", help="plain PostgreSQL partitions even where "
                                                                  "TimescaleDB is available")
    db_migrate.set_defaults(func=cmd_db_migrate)
    db_ship = db_sub.add_parser("ship", help="the recorder's journal files into the database, following them",
                                description="Journal files (never the rings) into PostgreSQL by binary COPY, each "
                                            "batch committed with its watermark: an outage or a crash loses nothing "
                                            "and loads nothing twice (config: /etc/ttquant/ship.VENUE.toml).",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    db_ship.add_argument("venue", help="the recorded stack, e.g. binance")
    db_ship.add_argument("--config", help="the config file (default /etc/ttquant/ship.VENUE.toml)")
    db_ship.set_defaults(func=cmd_db_ship)

    metrics = sub.add_parser("metrics", help="serve every ring and telemetry segment on the host to Prometheus",
                             description="Prometheus text on /metrics at one address (listen, default "
                                         "127.0.0.1:9108), read from /dev/shm at each scrape: nothing to configure "
                                         "per venue or strategy (config: /etc/ttquant/metrics.toml, optional).",
                             epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    metrics.add_argument("--config", help="the config file (default /etc/ttquant/metrics.toml; "
                                          "`ttquant config example metrics`)")
    metrics.set_defaults(func=cmd_metrics)

    kill = sub.add_parser("kill", help="engage (or release) a venue's kill switch",
                          description="Every new order rejected (5001) and open orders canceled until released.")
    kill.add_argument("venue", help="the gateway's rings name, e.g. binance")
    kill.add_argument("--release", action="store_true", help="release the kill switch")
    kill.add_argument("--reason", default="", help="logged by the gateway with who and when")
    kill.add_argument("--status", action="store_true", help="show the switch and the gateway; change nothing")
    kill.add_argument("--force", action="store_true", help="set it even with no gateway of that name running")
    kill.set_defaults(func=cmd_kill)

    config = sub.add_parser("config", help="example configurations and checks",
                            description="The example configuration of each role (every key with its default "
                                        "and a comment) and a check of a file, as the daemon would check it.")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    example = config_sub.add_parser("example", help="print a role's example config, with values put over it")
    example.add_argument("role", choices=sorted(SCHEMAS))
    example.add_argument("--set-json", metavar="JSON", default="",
                         help='values to put over the example, nested like the TOML, e.g. '
                              '\'{"rings": {"name": "binance"}, "markets": {"usdm": null}}\' (null removes)')
    example.set_defaults(func=cmd_config_example)
    check = config_sub.add_parser("check", help="check a config file (exit 2 naming the key if it is refused)")
    check.add_argument("role", choices=sorted(SCHEMAS))
    check.add_argument("instance", nargs="?", help="check /etc/ttquant/ROLE.INSTANCE.toml")
    check.add_argument("--config", help="the file to check")
    check.set_defaults(func=cmd_config_check)

    rings_demo = rings_sub.add_parser("demo", help="the rings alone across processes",
                                      description="One tick writer, two tick readers and an order SPSC "
                                                  "pair in separate processes; prints records moved, laps "
                                                  "and hop latency percentiles.")
    rings_demo.add_argument("--seconds", type=float, default=10.0, help="how long to run (default 10)")
    rings_demo.add_argument("--venue", help="venue part of the ring names (default: demo<pid>)")
    rings_demo.set_defaults(func=cmd_rings_demo)

    demo = sub.add_parser("demo", help="the main job on the embedded default",
                          description="The simulated Binance venue replaying the real captures (taking "
                                      "orders), the md daemon, an example strategy and the gateway, for "
                                      "about 30 s; then orders, fills, rejects, position, PnL and "
                                      "tick-to-order latency. --md-only: market data alone.")
    demo.add_argument("--seconds", type=float, default=0, help="how long to run (default 30; md-only 20)")
    demo.add_argument("--strategy", default="market_maker",
                      choices=["market_maker", "ema_cross", "mean_reversion", "grid", "spread_arb"])
    demo.add_argument("--md-only", action="store_true", help="market data only: venue, md and a reader")
    demo.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1: real time)")
    demo.add_argument("--synthetic", action="store_true", help="the synthetic market even when captures exist")
    demo.add_argument("--adapter", default="sim", choices=["sim", "binance"],
                      help="the gateway's venue adapter (default sim); binance: signed orders to the simulated "
                           "venue with a throwaway key, on the strategy's market (spot or USDT-M futures)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:2] == ["venue-sim", "binance"]:
        # one parser for the venue's options, its own: nothing to keep in step here
        from ttquant.core.sim.binance_venue import main as venue_main
        return venue_main(argv[2:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"ttquant: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
