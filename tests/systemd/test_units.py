"""The units in systemd/, checked by systemd's own tools and read for what the stack relies on.

`systemd-analyze verify` (nothing on stderr) and `systemd-analyze security --offline=yes`
(exposure <= 4.0) run on every unit, templates instantiated, inside a root made for the test:
the units under etc/systemd/system, the host's own units under usr/lib/systemd/system (the
targets a service's default dependencies name), and stand-ins for the binaries verify looks
for (/opt/ttquant/venv/bin/ttquant, /bin/kill). No systemd needs to run; systemd 252 or later.
The rest reads the unit files as systemd does (an empty assignment resets a list) and asks
systemd-analyze to parse time spans and expand system-call groups.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

UNITS = pathlib.Path(__file__).resolve().parents[2] / "systemd"
TTQUANT = "/opt/ttquant/venv/bin/ttquant"

# template -> (instance name, what ExecStart runs: the contract's command lines)
SERVICES = {
    "md": ("ttquant-md@binance.service", f"{TTQUANT} md %i"),
    "gateway": ("ttquant-gateway@binance.service", f"{TTQUANT} gateway %i"),
    "recorder": ("ttquant-recorder@binance.service", f"{TTQUANT} record %i"),
    "strategy": ("ttquant-strategy@mm.service", f"{TTQUANT} strategy run %i"),
    "venue-sim": ("ttquant-venue-sim@binance.service",
                  f"{TTQUANT} venue-sim %i --orders %i $TTQ_VENUE_SIM_ARGS"),
    "ship": ("ttquant-ship@binance.service", f"{TTQUANT} db ship %i"),
    "metrics": ("ttquant-metrics.service", f"{TTQUANT} metrics --config /etc/ttquant/metrics.toml"),
}
DAEMONS = ["md", "gateway", "recorder", "strategy", "ship", "metrics"]   # Type=notify, watchdog (ops contract)
VENUE_UNITS = ["md", "gateway", "recorder", "venue-sim", "ship"]         # %i is the venue
SIDECARS = ["ship", "metrics"]      # off the trading path: idle scheduling, enabled per host
TARGETS = ["ttquant@binance.target", "ttquant.target"]
FRONT_DOOR = "ttquant@binance.service"                         # `systemctl start ttquant@binance`
INSTANCES = [instance for instance, _ in SERVICES.values()] + TARGETS + [FRONT_DOOR]

# The per-site drop-ins of systemd/README.md, as Ansible renders them.
SITE_DROP_INS = {
    "ttquant@binance.target.d/strategies.conf": "[Unit]\nWants=ttquant-strategy@mm.service\n",
    "ttquant@binance.target.d/venue-sim.conf": "[Unit]\nWants=ttquant-venue-sim@binance.service\n",
    "ttquant-strategy@mm.service.d/venues.conf":
        "[Unit]\nAfter=ttquant-gateway@binance.service\nPartOf=ttquant@binance.target\n",
    "ttquant-md@binance.service.d/cpu.conf":
        "[Service]\nCPUAffinity=2 3\nCPUSchedulingPolicy=fifo\nCPUSchedulingPriority=50\n",
    "ttquant-md@binance.service.d/faults.conf": "[Service]\nEnvironment=TTQ_TEST_FAULTS=1\n",
    "ttquant-gateway@binance.service.d/credentials.conf":
        "[Service]\nLoadCredential=binance:/etc/ttquant/credentials/binance.toml\n",
    "ttquant-venue-sim@binance.service.d/args.conf": '[Service]\nEnvironment="TTQ_VENUE_SIM_ARGS=--port 8765 '
                                                     '--replay synthetic --balances USDT=100000,BTC=2"\n',
}


def template(name: str) -> str:
    return re.sub(r"@[^.]+\.", "@.", name)


def unit_file(role: str) -> pathlib.Path:
    return UNITS / template(SERVICES[role][0])


def read_unit(path: pathlib.Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values]}}; an empty assignment empties the list, as in systemd."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, eq, value = line.partition("=")
        assert eq and current is not None and not value.endswith("\\"), f"{path.name}:{n}: {raw!r}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def words(section: dict[str, list[str]], key: str) -> list[str]:
    """A list setting's words, all its lines together."""
    return [w for v in section.get(key, []) for w in v.split()]


def last(section: dict[str, list[str]], key: str) -> str | None:
    """A single setting: the last assignment wins."""
    values = section.get(key, [])
    return values[-1] if values else None


def seconds(span: str) -> float:
    """A time span as systemd reads it (`systemd-analyze timespan`)."""
    out = subprocess.run(["systemd-analyze", "timespan", span], capture_output=True, text=True,
                         check=True).stdout
    return int(re.search(r"μs:\s*(\d+)", out).group(1)) / 1e6


def analyze(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args, f"--root={root}"], capture_output=True, text=True,
                          timeout=120)


def make_root(root: pathlib.Path, drop_ins: dict[str, str] | None = None,
              links: dict[str, str] | None = None) -> pathlib.Path:
    """links: {path under etc/systemd/system: target}, as `systemctl enable` makes them."""
    system = root / "etc/systemd/system"
    system.mkdir(parents=True)
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".target"):
            shutil.copy(path, system / path.name)
    for name, text in (drop_ins or {}).items():
        (system / name).parent.mkdir(exist_ok=True)
        (system / name).write_text(text)
    for name, target in (links or {}).items():
        (system / name).parent.mkdir(exist_ok=True)
        (system / name).symlink_to(target)
    host_units = next(p for p in map(pathlib.Path, ("/usr/lib/systemd/system", "/lib/systemd/system"))
                      if (p / "sysinit.target").exists())
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    for stand_in in (root / TTQUANT.lstrip("/"), root / "usr/bin/kill", root / "usr/bin/systemctl"):
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("root"))


# -- systemd's own checks -------------------------------------------------------------------------

@pytest.mark.parametrize("instance", INSTANCES)
def test_verify_says_nothing(root, instance):
    r = analyze(root, "verify", instance)
    assert (r.returncode, r.stderr, r.stdout) == (0, "", "")


@pytest.mark.parametrize("instance", [instance for instance, _ in SERVICES.values()] + [FRONT_DOOR])
def test_security_exposure_at_most_4(root, instance):
    r = analyze(root, "security", "--offline=yes", instance)
    found = re.search(rf"Overall exposure level for {re.escape(instance)}: (\d+\.\d+)", r.stdout)
    assert found, r.stdout + r.stderr
    assert float(found.group(1)) <= 4.0, r.stdout


def test_site_drop_ins_load_cleanly(tmp_path):
    root = make_root(tmp_path, SITE_DROP_INS)
    for instance in ("ttquant@binance.target", "ttquant-strategy@mm.service", "ttquant-md@binance.service",
                     "ttquant-venue-sim@binance.service", "ttquant-gateway@binance.service"):
        r = analyze(root, "verify", instance)
        assert (instance, r.returncode, r.stderr) == (instance, 0, "")


# -- what the stack relies on ---------------------------------------------------------------------

def test_the_front_door_starts_and_stops_the_stack_and_waits_for_it():
    s = read_unit(UNITS / "ttquant@.service")
    svc = s["Service"]
    assert (svc["Type"], svc["RemainAfterExit"]) == (["oneshot"], ["yes"])
    assert svc["ExecStart"] == ["/bin/systemctl --no-ask-password start ttquant@%i.target"]
    # md stops last (everything is ordered after it): its stop job ends when the stack is down
    assert svc["ExecStop"] == ["/bin/systemctl --no-ask-password stop ttquant@%i.target ttquant-md@%i.service"]
    assert "After" not in s["Unit"] and "Before" not in s["Unit"]      # no ordering: no deadlock on stop
    for role in ("gateway", "recorder"):
        assert "ttquant-md@%i.service" in words(read_unit(unit_file(role))["Unit"], "After")


@pytest.mark.parametrize("role", list(SERVICES))
def test_exec_start_is_the_contracts_command(role):
    assert read_unit(unit_file(role))["Service"]["ExecStart"] == [SERVICES[role][1]]


@pytest.mark.parametrize("role", DAEMONS)
def test_daemons_notify_and_are_watched(role):
    s = read_unit(unit_file(role))["Service"]
    assert (s["Type"], s["NotifyAccess"]) == (["notify"], ["main"])
    watchdog = seconds(s["WatchdogSec"][-1])
    if role in ("md", "gateway"):
        assert watchdog == 2.0
    elif role == "ship":        # fed once per pass over the journals, at idle priority
        assert 10 <= watchdog <= 60
    else:
        assert 0 < watchdog <= 10


def test_venue_sim_says_ready_but_is_not_watched():
    s = read_unit(unit_file("venue-sim"))["Service"]
    # READY=1 once it listens; a test tool: no watchdog
    assert (s["Type"], s["NotifyAccess"]) == (["notify"], ["main"]) and "WatchdogSec" not in s


@pytest.mark.parametrize("role", list(SERVICES))
def test_restarts_at_once_and_keeps_trying(role):
    u = read_unit(unit_file(role))
    assert last(u["Service"], "Restart") == "always"
    assert seconds(last(u["Service"], "RestartSec")) < 1.0
    assert {"2", "4"} <= set(words(u["Service"], "RestartPreventExitStatus"))
    # a strategy stopped by its own error (exit 3, orders canceled) waits for a person
    assert ("3" in words(u["Service"], "RestartPreventExitStatus")) == (role == "strategy")
    assert not {"StartLimitIntervalSec", "StartLimitBurst"} & set(u["Service"])     # [Unit] only
    assert int(last(u["Unit"], "StartLimitBurst")) >= 30
    assert seconds(last(u["Unit"], "StartLimitIntervalSec")) >= 60


@pytest.mark.parametrize("role", list(SERVICES))
def test_stops_cleanly_in_time(role):
    s = read_unit(unit_file(role))["Service"]
    assert s["KillMode"] == ["mixed"]
    stop = seconds(s["TimeoutStopSec"][-1])
    assert 0 < stop <= 60
    if role == "strategy":      # cancels its orders on the way out
        others = [read_unit(unit_file(r))["Service"]["TimeoutStopSec"][-1] for r in ("md", "gateway")]
        assert stop > max(map(seconds, others))
    if role in DAEMONS:         # md waits for books, the gateway reconciles
        assert 30 <= seconds(s["TimeoutStartSec"][-1]) <= 300


@pytest.mark.parametrize("role", list(SERVICES))
def test_runs_as_ttquant_without_privileges(role):
    s = read_unit(unit_file(role))["Service"]
    assert (s["User"], s["Group"], s["UMask"]) == (["ttquant"], ["ttquant"], ["0007"])
    assert s["NoNewPrivileges"] == ["yes"] and s["CapabilityBoundingSet"] == []


@pytest.mark.parametrize("role", list(SERVICES))
def test_rings_stay_shared(role):
    s = read_unit(unit_file(role))["Service"]
    assert s["RemoveIPC"] == ["no"]                 # yes would unlink the rings
    assert s["PrivateDevices"] == ["yes"]           # binds the host's /dev/shm (see the unit's comment)
    for key in ("InaccessiblePaths", "TemporaryFileSystem", "ReadOnlyPaths", "BindPaths",
                "BindReadOnlyPaths"):
        if key == "ReadOnlyPaths" and role == "metrics":    # it only reads the segments
            assert words(s, key) == ["/dev/shm"]
            continue
        assert not any(w.lstrip("-").startswith("/dev") for w in words(s, key)), key


@pytest.mark.parametrize("role", list(SERVICES))
def test_credentials_only_where_needed_and_reload_only_for_the_gateway(role):
    s = read_unit(unit_file(role))["Service"]
    assert ("ExecReload" in s) == (role == "gateway")
    if role == "gateway":
        # the API key is the site's: a drop-in where the adapter signs (sim and dry need none), see below
        assert not {"LoadCredential", "LoadCredentialEncrypted", "SetCredential"} & set(s)
        assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    elif role == "ship":
        # the database password never in a config file or the environment: libpq reads the
        # credential systemd copied ($CREDENTIALS_DIRECTORY is /run/credentials/UNIT in systemd 252)
        assert s["LoadCredential"] == ["pgpass:/etc/ttquant/credentials/database.pgpass"]
        assert "PGPASSFILE=/run/credentials/%n/pgpass" in words(s, "Environment")
        assert not [w for w in words(s, "Environment") if re.match(r"(TTQ_DATABASE_URL|PGPASSWORD)=", w)]
        assert "EnvironmentFile" not in s
    else:
        assert not {"LoadCredential", "LoadCredentialEncrypted", "SetCredential"} & set(s)


@pytest.mark.parametrize("role,state", [
    ("md", []), ("gateway", ["ttquant/gateway"]), ("recorder", ["ttquant/journal"]), ("strategy", ["ttquant/runs"]),
    ("venue-sim", []), ("ship", []), ("metrics", [])])
def test_writes_only_where_its_state_is(role, state):
    s = read_unit(unit_file(role))["Service"]
    assert s["ProtectSystem"] == ["strict"] and s.get("StateDirectory", []) == state
    assert not {"ReadWritePaths", "RuntimeDirectory"} & set(s)      # locks and rings are in /dev/shm


@pytest.mark.parametrize("role,families,private", [
    ("md", {"AF_UNIX", "AF_INET", "AF_INET6"}, False), ("gateway", {"AF_UNIX", "AF_INET", "AF_INET6"}, False),
    ("venue-sim", {"AF_UNIX", "AF_INET", "AF_INET6"}, False),
    ("recorder", {"AF_UNIX"}, True), ("strategy", {"AF_UNIX"}, True),
    ("ship", {"AF_UNIX", "AF_INET", "AF_INET6"}, False), ("metrics", {"AF_UNIX", "AF_INET", "AF_INET6"}, False)])
def test_network_only_where_needed(role, families, private):
    u = read_unit(unit_file(role))
    assert set(words(u["Service"], "RestrictAddressFamilies")) == families
    assert (last(u["Service"], "PrivateNetwork") == "yes") == private
    if role in ("venue-sim", "metrics"):     # servers for this host's clients only
        assert (words(u["Service"], "IPAddressAllow"), words(u["Service"], "IPAddressDeny")) == (["localhost"], ["any"])


@pytest.mark.parametrize("role", list(SERVICES))
def test_realtime_left_to_units_that_may_get_it(role):
    # the runner sets [process] scheduling itself: fifo/rr refused by RestrictRealtime= is exit 2
    restricted = last(read_unit(unit_file(role))["Service"], "RestrictRealtime") == "yes"
    assert restricted == (role in ("recorder", "venue-sim", "ship", "metrics"))


def allowed_syscalls(filters: list[str]) -> set[str]:
    """What a unit's SystemCallFilter= lines leave allowed (an allow-list first, then ~ removals)."""
    def expand(names):
        out = subprocess.run(["systemd-analyze", "syscall-filter", *names], capture_output=True, text=True,
                             check=True).stdout
        calls, groups = set(), set()
        for line in out.splitlines():
            name = line.strip()
            if line.startswith("    ") and name and not name.startswith("#"):
                (groups if name.startswith("@") else calls).add(name)
        return calls | (expand(sorted(groups)) if groups else set())
    assert filters and not filters[0].startswith("~")
    allowed: set[str] = set()
    for f in filters:
        names = f.lstrip("~").split()
        calls = {n for n in names if not n.startswith("@")} | expand([n for n in names if n.startswith("@")])
        allowed = allowed - calls if f.startswith("~") else allowed | calls
    return allowed


@pytest.mark.parametrize("role", list(SERVICES))
def test_system_calls_the_daemons_make_are_allowed(role):
    s = read_unit(unit_file(role))["Service"]
    assert s["SystemCallErrorNumber"] == ["EPERM"] and s["SystemCallArchitectures"] == ["native"]
    needed = {"sched_setaffinity", "sched_getaffinity", "sched_setscheduler", "futex", "mlock", "flock",
              "fallocate", "fchmod", "fchown", "prctl", "mmap", "madvise", "fsync", "epoll_wait", "getrandom"}
    assert needed - allowed_syscalls(s["SystemCallFilter"]) == set()


# -- how the units hang together ------------------------------------------------------------------

UNIT_FILES = sorted(p for p in UNITS.glob("ttquant*") if p.suffix in (".service", ".target"))


@pytest.mark.parametrize("path", UNIT_FILES, ids=lambda p: p.name)
def test_no_unit_takes_another_down(path):
    u = read_unit(path)
    assert not {"Requires", "Requisite", "BindsTo", "Upholds"} & set(u["Unit"])
    assert all(w.endswith(".target") for w in words(u["Unit"], "PartOf"))    # stop and restart only


@pytest.mark.parametrize("role", VENUE_UNITS)
def test_venue_units_are_part_of_their_stack(role):
    assert words(read_unit(unit_file(role))["Unit"], "PartOf") == ["ttquant@%i.target"]


@pytest.mark.parametrize("role,after,before", [
    ("md", set(), set()),
    ("gateway", {"ttquant-md@%i.service"}, set()),
    ("recorder", {"ttquant-md@%i.service", "ttquant-gateway@%i.service"}, set()),
    ("venue-sim", set(), {"ttquant-md@%i.service", "ttquant-gateway@%i.service"}),
    # after its stack's target: the stack's start does not wait for the database
    ("ship", {"ttquant@%i.target", "ttquant-recorder@%i.service"}, set())])
def test_start_order_md_gateway_recorder(role, after, before):
    u = read_unit(unit_file(role))
    assert {w for w in words(u["Unit"], "After") if w.startswith("ttquant")} == after
    assert {w for w in words(u["Unit"], "Before") if w.startswith("ttquant")} == before


def test_strategy_template_names_no_venue():
    # %i is the strategy; its venues, order and stacks come from venues.conf
    u = read_unit(unit_file("strategy"))
    assert not any(k in u["Unit"] for k in ("After", "Before", "Wants", "PartOf"))


def test_the_stack_target_wants_md_gateway_recorder():
    u = read_unit(UNITS / "ttquant@.target")
    assert set(words(u["Unit"], "Wants")) == {"ttquant-md@%i.service", "ttquant-gateway@%i.service",
                                               "ttquant-recorder@%i.service"}
    assert words(u["Unit"], "PartOf") == words(u["Unit"], "Before") == ["ttquant.target"]
    assert words(u["Install"], "WantedBy") == ["ttquant.target"]


def test_the_host_target_starts_at_boot():
    assert words(read_unit(UNITS / "ttquant.target")["Install"], "WantedBy") == ["multi-user.target"]


@pytest.mark.parametrize("role", SIDECARS)
def test_sidecars_run_only_when_nothing_else_wants_the_cpu(role):
    s = read_unit(unit_file(role))["Service"]
    assert (last(s, "Nice"), last(s, "CPUSchedulingPolicy"), last(s, "IOSchedulingClass")) == ("19", "idle", "idle")
    # and its cgroup: SCHED_IDLE alone ranks the task only against its own group's
    assert last(s, "CPUWeight") == "idle"


@pytest.mark.parametrize("role,target", [("ship", "ttquant@%i.target"), ("metrics", "ttquant.target")])
def test_sidecars_are_enabled_into_their_target_and_stop_with_it(role, target):
    u = read_unit(unit_file(role))
    # enabled per host (a host without a database runs no shipper), so no target names them
    assert words(u["Install"], "WantedBy") == [target] and words(u["Unit"], "PartOf") == [target]
    for path in UNITS.glob("*.target"):
        assert not any(w.startswith(f"ttquant-{role}") for w in words(read_unit(path)["Unit"], "Wants"))


def test_enabled_sidecars_load_without_an_ordering_cycle(tmp_path):
    # what `systemctl enable ttquant-ship@binance.service ttquant-metrics.service` links
    root = make_root(tmp_path, SITE_DROP_INS, links={
        "ttquant@binance.target.wants/ttquant-ship@binance.service": "../ttquant-ship@.service",
        "ttquant.target.wants/ttquant-metrics.service": "../ttquant-metrics.service",
        "ttquant.target.wants/ttquant@binance.target": "../ttquant@.target"})
    for instance in ("ttquant.target", "ttquant@binance.target", "ttquant-ship@binance.service",
                     "ttquant-metrics.service"):
        r = analyze(root, "verify", instance)
        assert (instance, r.returncode, r.stderr) == (instance, 0, "")
