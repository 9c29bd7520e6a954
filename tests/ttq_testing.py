"""Test and benchmark support: fixtures for unique ring names, shm hygiene and child
processes that always die, plus polling with a deadline. tests/conftest.py and
bench/conftest.py import the fixtures from here."""
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ttquant.core.rings import unlink

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


SHM_DIR = "/dev/shm"
_counter = itertools.count()


def _ttq_entries():
    try:
        return {e for e in os.listdir(SHM_DIR) if e.startswith("ttq.")}
    except FileNotFoundError:
        return set()


SESSION_PREFIX = f"t{os.getpid()}x"      # every venue the fixtures hand out starts with it


@pytest.fixture(scope="session", autouse=True)
def shm_left_behind():
    """The session must leave /dev/shm as it found it. Segments named by these fixtures are
    removed and reported; any other new ttq.* entry is reported but never touched, because
    it may belong to a live system running beside the tests."""
    before = _ttq_entries()
    yield
    new = sorted(_ttq_entries() - before)
    ours = [e for e in new if e.startswith(f"ttq.{SESSION_PREFIX}")]
    for entry in ours:
        try:
            os.unlink(os.path.join(SHM_DIR, entry))
        except FileNotFoundError:
            pass
    assert not new, f"the test session left these in {SHM_DIR}: {new}"


@pytest.fixture
def venue(request):
    """A venue name no other test (or test run) uses; its segments must be gone after the test."""
    name = f"{SESSION_PREFIX}{next(_counter)}x{uuid.uuid4().hex[:6]}"
    yield name
    prefix = f"ttq.{name}."
    left = sorted(e for e in _ttq_entries() if e.startswith(prefix))
    for entry in left:
        try:
            os.unlink(os.path.join(SHM_DIR, entry))
        except FileNotFoundError:
            pass
    if left and not request.node.rep_call_failed:
        pytest.fail(f"{request.node.name} left segments behind: {left}")


def unlink_venue(venue):
    """Remove every /dev/shm entry of a venue (rings, board, stats, instrument table): what a
    daemon under test leaves on purpose, since its segments outlive it."""
    for entry in _ttq_entries():
        if entry.startswith(f"ttq.{venue}."):
            try:
                os.unlink(os.path.join(SHM_DIR, entry))
            except FileNotFoundError:
                pass


@pytest.fixture
def ring(venue):
    """ring("ticks") -> a unique /ttq.<venue>.ticks name; unlinked after the test."""
    names = []

    def make(kind, owner=None):
        name = f"/ttq.{venue}.{kind}" + (f".{owner}" if owner else "")
        names.append(name)
        return name

    yield make
    for name in names:
        unlink(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call_failed = report.failed
    elif not hasattr(item, "rep_call_failed"):
        item.rep_call_failed = report.failed
    return report


class Children:
    """Child processes in their own process groups, killed (group and all) at teardown."""

    def __init__(self):
        self.procs = []
        self.graceful = set()

    def start(self, *args, env=None, graceful=False, **kwargs):
        """graceful: SIGTERM first at teardown, for children whose own children (multiprocessing's
        resource tracker) must unlink what they made; SIGKILL would leave their semaphores in /dev/shm."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen([sys.executable, *map(str, args)], start_new_session=True,
                                env=full_env, **kwargs)
        self.procs.append(proc)
        if graceful:
            self.graceful.add(proc.pid)
        return proc

    def stop(self, proc, timeout=20.0):
        """SIGTERM to the group, then SIGKILL if it is not gone within `timeout` s; the exit code."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=timeout)
        except ProcessLookupError:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=10)

    def kill_all(self):
        for proc in self.procs:
            if proc.pid in self.graceful and proc.poll() is None:
                self.stop(proc, timeout=10.0)
        for proc in self.procs:
            try:    # the whole group, even if its leader is gone: grandchildren die too
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def wait_for(predicate, timeout=10.0, interval=0.005, what="condition"):
    """Poll predicate until true; fail the test with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def start_binance_venue(children, log, *options):
    """`ttquant venue-sim binance --port 0 --rest-port 0 OPTIONS` in `children`, its output in the file `log`:
    (main port, REST order entry port) once its first line names them."""
    with open(log, "wb") as out:
        children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--rest-port", "0", *options,
                       stdout=out, stderr=subprocess.STDOUT)
    first = wait_for(lambda: (text := log.read_text()).partition("\n")[1] and text.partition("\n")[0],
                     timeout=30, interval=0.05, what="venue-sim's first line")
    assert "REST order entry on 127.0.0.1:" in first, log.read_text()
    return int(first.split("listening on 127.0.0.1:", 1)[1].split(" ", 1)[0]), int(first.rsplit("127.0.0.1:", 1)[1])


@pytest.fixture
def children():
    kids = Children()
    yield kids
    kids.kill_all()


def attach_ticks(venue):
    """A reader of the venue's tick ring from its oldest record, or None while it is not there."""
    from ttquant.core.rings import BroadcastReader, RingNotFoundError
    try:
        return BroadcastReader(f"/ttq.{venue}.ticks", start="oldest")
    except RingNotFoundError:
        return None


def config_file(path, role, overrides=None):
    """`role`'s example config (core/daemon/examples) with `overrides` put over it, nested like
    the TOML (None removes a key or table): what the demo and Ansible write too."""
    import pathlib

    from ttquant.core.daemon.config import render_example
    path = pathlib.Path(path)
    path.write_text(render_example(role, overrides or {}))
    return path


def md_config(path, venue, port, markets=None, **tables):
    """md's example pointed at the simulated venue on `port`, with rings `venue`; markets:
    {market: (symbols, streams or None for the example's)}; tables: more overrides by table."""
    markets = markets or {"spot": (["BTCUSDT"], None), "usdm": (["BTCUSDT"], None)}
    chosen = {name: None for name in ("spot", "usdm") if name not in markets}
    for name, (symbols, streams) in markets.items():
        chosen[name] = {"symbols": symbols, "ws_url": f"ws://127.0.0.1:{port}/{name}",
                        "rest_url": f"http://127.0.0.1:{port}"}
        if streams:
            chosen[name]["streams"] = streams
    overrides = {"rings": {"name": venue}, "markets": chosen}
    for table, values in tables.items():
        overrides.setdefault(table, {}).update(values)
    return config_file(path, "md", overrides)


class NotifyListener:
    """A NOTIFY_SOCKET of the test's own: what a daemon tells systemd, message by message."""

    def __init__(self, path):
        import socket
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages = []

    def read(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def wait_message(self, prefix, timeout=20):
        return wait_for(lambda: next((m for m in self.read() if m.startswith(prefix)), None), timeout=timeout,
                        what=f"{prefix} on the notify socket")

    def close(self):
        self.sock.close()


def spot_table():
    """A binance instrument table of one instrument: BTCUSDT spot, id 1, prices at 2 decimals,
    sizes at 5 (what the journal, replay and database tests record)."""
    from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
    t = InstrumentTable("binance")
    t.add(Instrument(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT, base="BTC",
                     quote="USDT", price_precision=2, size_precision=5, tick_size=1, step_size=1, min_qty=1,
                     max_qty=0, min_price=1, max_price=0, min_notional=500))
    return t


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_metrics(url):
    """GET a Prometheus endpoint and parse it with prometheus-client's own parser:
    {(sample name, sorted labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for fam in text_string_to_metric_families(text) for x in fam.samples}


def new_ed25519_signer():
    """An Ed25519Signer over a fresh private key (Binance's recommended key type), for tests of
    both sides of a signed request."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ttquant.core.venues.binance.signing import Ed25519Signer
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    return Ed25519Signer(pem)
