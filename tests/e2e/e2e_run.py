"""`make e2e`: the deployment, end to end, in a booted Debian container (issue: deploy).

    .venv/bin/python tests/e2e/e2e_run.py [--infra-only] [--root copy|overlay]

A minimal bookworm root (tests/e2e/container.py, cached under build/e2e/) is booted with
systemd-nspawn; Ansible deploys into it over ssh on a free loopback port with the local
inventory; the simulated venue runs on the host (the container shares its loopback and its
/dev/shm, so this script reads the tick and exec rings from the host, timing on the host clock).
Then, inside the container:
  1. systemctl start ttquant@binance: it returns with every daemon READY, ticks reach the ring
  2. SIGKILL md: systemd restarts it; time from the kill to the first new tick (restart_ms)
  3. md hangs (TTQ_TEST_FAULTS=1 + SIGUSR2): the watchdog fires, systemd restarts it (watchdog_restart_ms)
  4. a strategy trades; the gateway is SIGKILLed mid-run: no order sent twice, no fill lost,
     the venue's record and the strategy's positions agree; the strategy is SIGKILLed holding
     a position and comes back with it
  5. the sidecars: ttquant-metrics serves /metrics (scraped from inside the container: ttq_
     series, counters moving, only on its address, /dev/shm read-only to it); the shipper's rows
     rise in the container's PostgreSQL (installed and migrated by role ttquant_database)
  6. systemctl stop ttquant@binance: it returns with every unit exited 0 (the shipper's too), no
     process left, journals flushed
  7. the shipper alone catches up: the database holds exactly the journal's trades, quotes and
     exec reports, its watermarks at the journal's ends
  8. a second playbook run: changed=0
  9. the Binance adapter: a third run with -e ttquant_e2e_gateway_adapter=binance points the gateway
     at the venue's signed REST order entry (its --rest-port) with the run's fresh Ed25519 key, which
     the playbook installed root 0600 in /etc/ttquant/credentials/binance.toml and the gateway's
     drop-in hands it with LoadCredential=binance: the unit shows it, user ttquant cannot read the
     file, the gateway says it is connected and logged on (session.logon on the WebSocket API), the
     strategy's orders are in the venue's record and on its signed openOrders (a key of the test's
     own), a SIGKILLed gateway comes back with the key and sends no order twice, the stack stops
     with exit 0, and the private key is in no journal field, deployed config or unit file,
     `systemctl show` or Ansible output (steps 1-8 run the gateway with the sim adapter)
Last line on success: `e2e: ok restart_ms=N watchdog_restart_ms=N shipped_rows=N binance_orders=N`.
Everything is torn down on success, failure, Ctrl-C and SIGTERM; the logs of the last run stay in build/e2e/last-run/.

--infra-only proves the machinery alone (root, boot, nsenter, ssh, `ansible -m ping`, the venue
on the host, the /dev/shm bind, teardown) and ends with `e2e: infra ok ...`.

Environment: TTQ_SKIP_E2E=1 skips (exit 0, says so); TTQ_E2E_ROOT=overlay|copy; TTQ_E2E_TIMEOUT
(seconds for the whole run, default 900).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from container import (  # noqa: E402  (after the path insert)
    Container,
    E2EError,
    Prerequisite,
    RootCache,
    die_with_parent,
    ensure_tools,
    free_port,
    log,
    mounts_under,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, "build", "e2e")
VENV = os.path.join(REPO, ".venv")
VENUE = "binance"                   # the venue and its rings' name (/ttq.binance.*)
TARGET = f"ttquant@{VENUE}.target"
SHIP = f"ttquant-ship@{VENUE}.service"
METRICS = "ttquant-metrics.service"
DATABASE = "ttquant"                # the local inventory's database (role ttquant_database)
STACK = f"ttquant@{VENUE}"          # what people type: systemctl start ttquant@binance (ttquant@.service)
MD = f"ttquant-md@{VENUE}.service"
GATEWAY = f"ttquant-gateway@{VENUE}.service"
SHM = "/dev/shm"
RESTART_TARGET_MS = 1000            # the target, kill to first new tick
RESTART_LIMIT_MS = 3000             # DESIGN.md §7: restart within 3 s after a crash or a missed watchdog


class Interrupted(E2EError):
    pass


def now_ns() -> int:
    return time.time_ns()       # CLOCK_REALTIME: the clock md stamps ts_pub with, shared with the container


def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise E2EError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Step:
    """One named step: printed when it starts and ends, with its time; failures name it."""
    current = "setup"

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        Step.current = self.name
        self.t0 = time.monotonic()
        log(f"[{self.name}] ...")
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            log(f"[{self.name}] ok ({time.monotonic() - self.t0:.1f} s)")
            Step.current = "between steps"
        return False


# -- reading the rings from the host ---------------------------------------------------------------
class RingWatch:
    """A broadcast ring read from the host, reopened if the writer recreated it (a new inode)."""

    def __init__(self, name):
        self.name, self.reader, self.segment, self.inode = name, None, None, None

    def _open(self, start):
        from ttquant.core.rings import BroadcastReader, RingNotFoundError, RingSegment
        self.close()
        try:
            self.segment = RingSegment.attach(self.name, read_only=True)
            self.reader = BroadcastReader(self.name, start=start)
        except (RingNotFoundError, FileNotFoundError):
            self.close()
            return False
        self.inode = os.stat(SHM + self.name).st_ino
        return True

    def ensure(self, start="oldest") -> bool:
        try:
            inode = os.stat(SHM + self.name).st_ino
        except FileNotFoundError:
            return self.reader is not None
        if self.reader is None or inode != self.inode:
            return self._open(start)
        return True

    def header(self) -> dict:
        return self.segment.header_fields() if self.segment is not None else {}

    def poll_all(self):
        """Every record available now (copies: the reader reuses its record objects)."""
        out = []
        if not self.ensure():
            return out
        rec = self.reader.poll()
        while rec is not None:
            out.append(rec.copy())
            rec = self.reader.poll()
        return out

    def first_after(self, t_ns, timeout, what):
        """ts_pub of the first record published after t_ns (host clock)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            if not self.ensure():
                time.sleep(0.005)
                continue
            rec = self.reader.poll()
            while rec is not None:
                seen += 1
                if rec.ts_pub > t_ns:
                    return rec.ts_pub
                rec = self.reader.poll()
            time.sleep(0.0005)
        raise E2EError(f"expected {what} within {timeout:.0f} s, saw none in {self.name} "
                       f"({seen} older records read; header: {self._brief()})")

    def _brief(self):
        h = self.header()
        return ", ".join(f"{k}={h.get(k)}" for k in ("write_position", "writer_epoch", "writer_attached_ns")) \
            if h else "ring missing"

    def close(self):
        for r in (self.reader, self.segment):
            if r is not None:
                try:
                    r.close()
                except Exception:
                    pass
        self.reader = self.segment = None


# -- the run ---------------------------------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.args = args
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.run_dir = os.path.join(BUILD, f"run-{self.run_id}")
        self.name = f"ttqe2e-{os.getpid()}"
        self.ct: Container | None = None
        self.venue: subprocess.Popen | None = None
        self.sim_port = 0
        self.ssh_port = 0
        self.db_port = 0                # the container's PostgreSQL, on the shared loopback
        self.metrics_port = 0
        self.key = os.path.join(self.run_dir, "id_ed25519")
        self.rest_port = 0              # the venue's signed REST order entry (--rest-port 0: it says which)
        # the gateway's Binance API key, a fresh Ed25519 one each run: its public half in the venue's keys
        # file, its credentials in Ansible's extra vars; an HMAC key of the test's own asks the venue
        self.api_key = f"ttqe2e{secrets.token_hex(16)}"
        self.private_pem = ""
        self.query_key, self.query_secret = f"ttqe2eq{secrets.token_hex(8)}", secrets.token_hex(32)
        self.venue_keys = os.path.join(self.run_dir, "venue-api-keys")
        self.gateway_key_vars = os.path.join(self.run_dir, "gateway-api-key.yml")
        self.logs: list[str] = []
        self.timings: dict[str, float] = {}
        self.results: dict[str, int] = {}
        self.torn_down = False
        self.made_shm = False

    # -- setup ----------------------------------------------------------------------------------
    def setup(self):
        with Step("prerequisites"):
            ensure_tools()
            _clean_stale_runs()
            left = sorted(glob.glob(f"{SHM}/ttq.{VENUE}.*"))
            if left:
                raise Prerequisite(f"{SHM} already has {VENUE} segments ({', '.join(map(os.path.basename, left[:5]))}"
                                   f"{', ...' if len(left) > 5 else ''}): another stack or test is using them, or "
                                   f"one left them; stop it, or remove them with `ttquant rings rm` / rm")
            self.made_shm = True
            if not os.path.exists(os.path.join(VENV, "bin", "ttquant")):
                raise Prerequisite(f"{VENV}/bin/ttquant missing: run `make build` first (make e2e does)")
        with Step("root"):
            cache = RootCache(BUILD)
            built = cache.ensure()
            if built is None:
                log(f"cached root {os.path.relpath(cache.dir, REPO)}")
            else:
                self.timings["root_build_s"] = built
                log(f"built root {os.path.relpath(cache.dir, REPO)} in {built:.1f} s")
        with Step("boot"):
            t0 = time.monotonic()
            os.makedirs(self.run_dir)
            self._write_api_key()
            self.ct = Container(cache, self.run_dir, self.name, self.args.root)
            self.timings["tree_s"] = self.ct.prepare()
            self._configure_ssh()
            self.timings["boot_s"] = self.ct.boot()
            log(f"container {self.name} up: tree ({self.args.root}) {self.timings['tree_s']:.2f} s, "
                f"boot {self.timings['boot_s']:.2f} s, PID 1 is host pid {self.ct.leader}")
            self._check_shm_bind()
            self._wait_ssh()
            self.timings["up_s"] = time.monotonic() - t0
        self.sim_port = free_port(avoid=set(range(2300, 2400)) | {self.ssh_port})
        self.db_port = free_port(avoid=set(range(2300, 2400)) | {self.ssh_port, self.sim_port})
        self.metrics_port = free_port(avoid=set(range(2300, 2400)) | {self.ssh_port, self.sim_port, self.db_port})

    def _write_api_key(self):
        """The run's keys, in 0600 files: the venue's --api-keys (the gateway key's public half beside
        it) and Ansible's -e @FILE (never on a command line: every user of a host can read those)."""
        import json

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        key = Ed25519PrivateKey.generate()
        self.private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        with open(os.path.join(self.run_dir, "gateway-key.pub.pem"), "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        credentials = f'api_key = "{self.api_key}"\nprivate_key = """{self.private_pem}"""\n'
        for path, text in ((self.venue_keys, f"{self.api_key} ed25519 gateway-key.pub.pem\n"
                                             f"{self.query_key} hmac {self.query_secret}\n"),
                           (self.gateway_key_vars, json.dumps({"ttquant_e2e_binance_credentials": credentials}))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)

    def _configure_ssh(self):
        self.ssh_port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ttq-e2e-{self.run_id}",
                        "-f", self.key], check=True)
        with open(self.key + ".pub") as f:
            self.ct.write("/root/.ssh/authorized_keys", f.read(), 0o600)
        os.chmod(self.ct.path("/root/.ssh"), 0o700)
        # Include of sshd_config.d comes first in Debian's sshd_config: the first value wins
        self.ct.write("/etc/ssh/sshd_config.d/00-ttq-e2e.conf",
                      f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n")

    def _check_shm_bind(self):
        probe = f"ttq-e2e-probe-{os.getpid()}"
        self.ct.run(["sh", "-c", f"echo from-container > /dev/shm/{probe}"])
        try:
            with open(f"{SHM}/{probe}") as f:
                seen = f.read().strip()
        except FileNotFoundError:
            seen = None
        finally:
            if os.path.exists(f"{SHM}/{probe}"):
                os.unlink(f"{SHM}/{probe}")
        if seen != "from-container":
            raise E2EError(f"expected the container's /dev/shm to be the host's (--bind=/dev/shm): a file made "
                           f"inside should show in {SHM} on the host, saw {seen!r}")

    def ssh_cmd(self, *cmd):
        return ["ssh", "-i", self.key, "-p", str(self.ssh_port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "root@127.0.0.1", *cmd]

    def _wait_ssh(self):
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < 30:
            p = subprocess.run(self.ssh_cmd("cat", "/etc/debian_version"), capture_output=True, text=True,
                               timeout=20)
            if p.returncode == 0:
                self.timings["ssh_s"] = time.monotonic() - t0
                log(f"ssh root@127.0.0.1:{self.ssh_port} with the run's key: Debian {p.stdout.strip()}")
                return
            last = p.stderr.strip()
            time.sleep(0.2)
        state = self.ct.systemctl("status", "ssh.service", check=False).stdout
        raise E2EError(f"expected an ssh login on 127.0.0.1:{self.ssh_port} within 30 s, saw: {last}\n{state}")

    def start_venue(self, gid=None):
        """`ttquant venue-sim` on the host, in its own process group. With the container's
        ttquant gid as its group, the rings it makes (the gateway's request and report rings, mode
        0660) are the gateway's to open: no user namespace, the container's gids are the host's."""
        path = os.path.join(self.run_dir, "venue.log")
        self.logs.append(path)
        out = open(path, "wb")
        # --wait-clients 1: the capture (about 6 minutes) starts when md first connects, not during the deploy
        self.venue = subprocess.Popen(
            [os.path.join(VENV, "bin", "ttquant"), "venue-sim", VENUE, "--port", str(self.sim_port), "--orders",
             VENUE, "--balances", "USDT=100000,BTC=2", "--wait-clients", "1", "--rest-port", "0",
             "--api-keys", self.venue_keys],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(), **({"group": gid, "extra_groups": [gid]} if gid is not None else {}))
        out.close()

        def port():
            if self.venue.poll() is not None:
                raise E2EError(f"venue-sim exited {self.venue.returncode}:\n{_read(path)[-2000:]}")
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", _read(path))
            return int(m.group(1)) if m else 0
        got = wait_until(port, 60, "venue-sim to listen")
        if got != self.sim_port:
            raise E2EError(f"expected venue-sim on port {self.sim_port}, it says {got}")
        rest = re.search(r"REST order entry on 127\.0\.0\.1:(\d+)", _read(path))
        if not rest:
            raise E2EError(f"expected venue-sim to name its REST order entry port (--rest-port 0) on its first "
                           f"line, saw:\n{_read(path)[:500]}")
        self.rest_port = int(rest.group(1))
        log(f"venue-sim on the host: http://127.0.0.1:{self.sim_port}, signed REST order entry on "
            f"http://127.0.0.1:{self.rest_port} (pid {self.venue.pid})")
        status = self.sim_get("/_sim/status")
        log(f"venue-sim status: {str(status)[:160]}")

    def venue_from_container(self):
        """The container shares the host's loopback: the venue answers from inside."""
        url = f"http://127.0.0.1:{self.sim_port}/_sim/status"
        p = self.ct.run(["python3", "-c", f"import urllib.request; print(urllib.request.urlopen({url!r}, "
                         f"timeout=5).status)"], check=False)
        if p.stdout.strip() != "200":
            raise E2EError(f"expected the venue at {url} to answer from inside the container (shared "
                           f"loopback), saw exit {p.returncode}: {p.stdout}{p.stderr}")
        log(f"the venue answers from inside the container: {url}")

    def sim_get(self, path):
        import json
        with urllib.request.urlopen(f"http://127.0.0.1:{self.sim_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    # -- Ansible --------------------------------------------------------------------------------
    def ansible_env(self):
        env = dict(os.environ)
        cfg = os.path.join(REPO, "ansible", "ansible.cfg")
        if os.path.exists(cfg):
            env["ANSIBLE_CONFIG"] = cfg
        cp = os.path.join(self.run_dir, "cp")
        os.makedirs(cp, exist_ok=True)
        env.update({
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=30s -o UserKnownHostsFile=/dev/null "
                                "-o StrictHostKeyChecking=no -o LogLevel=ERROR",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": cp,
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            "PATH": os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", ""),
        })
        return env

    def ensure_ansible(self):
        if os.path.exists(os.path.join(VENV, "bin", "ansible-playbook")):
            return
        with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
            ops = tomllib.load(f)["project"].get("optional-dependencies", {}).get("ops", [])
        wanted = [r for r in ops if r.replace("_", "-").lower().startswith("ansible-core")]
        if not wanted:
            raise Prerequisite("no ansible-core in pyproject.toml's [project.optional-dependencies] ops, "
                               "and none in .venv: cannot run Ansible")
        log(f"installing {' '.join(wanted)} into .venv (the ops extra's controller side)")
        p = subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", *wanted], capture_output=True,
                           text=True, timeout=600)
        if p.returncode != 0:
            raise Prerequisite(f"cannot install {' '.join(wanted)} into .venv (no package access?):\n"
                               f"{p.stdout[-1500:]}{p.stderr[-1500:]}")

    def ansible(self, args, logname, timeout=600):
        path = os.path.join(self.run_dir, logname)
        self.logs.append(path)
        with open(path, "w") as out:
            p = subprocess.run(args, cwd=REPO, env=self.ansible_env(), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, _read(path)

    def ansible_ping(self):
        rc, out = self.ansible(
            [os.path.join(VENV, "bin", "ansible"), "all", "-i", "127.0.0.1,", "-u", "root", "--private-key",
             self.key, "-e", f"ansible_port={self.ssh_port}", "-m", "ansible.builtin.ping"], "ansible-ping.log")
        if rc != 0 or '"ping": "pong"' not in out:
            raise E2EError(f"expected `ansible -m ping` over ssh to answer pong, saw exit {rc}:\n{out[-2000:]}")
        log("ansible -m ping over ssh: pong")

    def playbook(self, logname, *extra):
        inventory = os.path.join(REPO, "ansible", "inventories", "local")
        site = os.path.join(REPO, "ansible", "site.yml")
        for p in (inventory, site):
            if not os.path.exists(p):
                raise E2EError(f"expected {os.path.relpath(p, REPO)} (the deployment, ansible/): missing")
        t0 = time.monotonic()
        rc, out = self.ansible(
            [os.path.join(VENV, "bin", "ansible-playbook"), "-i", inventory, site, "--private-key", self.key,
             "-e", f"ansible_port={self.ssh_port}", "-e", f"ttquant_sim_url=http://127.0.0.1:{self.sim_port}",
             "-e", f"ttquant_database_port={self.db_port}",
             "-e", f"ttquant_metrics_listen=127.0.0.1:{self.metrics_port}",
             "-e", f"@{self.gateway_key_vars}", *extra],
            logname)
        recap = re.findall(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
        if rc != 0 or not recap:
            raise E2EError(f"ansible-playbook failed (exit {rc}); its output's end:\n{_clip(_tail(out, 40))}")
        host, ok, changed, _unreachable, failed = recap[-1]
        log(f"playbook: {host} ok={ok} changed={changed} failed={failed} ({time.monotonic() - t0:.1f} s)")
        return int(changed), out

    def deploy(self):
        with Step("deploy"):
            self.ensure_ansible()
            self.ansible_ping()
            wheelhouse = os.path.join(REPO, "build", "wheelhouse")
            if not os.path.isdir(wheelhouse):
                raise E2EError("expected build/wheelhouse/ (the ttquant role installs from it): missing; "
                               "`make wheelhouse` makes it (make e2e depends on it)")
            t0 = time.monotonic()
            changed, _ = self.playbook("ansible-1.log")
            self.timings["deploy_s"] = time.monotonic() - t0
            if changed == 0:
                raise E2EError("expected the first playbook run on a fresh container to change something, "
                               "saw changed=0")
            self.expect_migrated()
        with Step("venue"):
            self.start_venue(self.ttquant_gid())

    def ttquant_gid(self) -> int:
        gid = None
        with open(self.ct.path("/etc/group")) as f:
            for line in f:
                parts = line.split(":")
                if parts[0] == "ttquant":
                    gid = int(parts[2])
        if gid is None:
            raise E2EError("expected a ttquant group in the container after the playbook: none in /etc/group")
        try:
            import grp
            host = grp.getgrnam("ttquant").gr_gid
        except KeyError:
            host = gid
        if host != gid:     # the rings' code would chown to the host's ttquant group
            raise E2EError(f"this host has a ttquant group (gid {host}) other than the container's ({gid}): "
                           f"the venue's rings would not be the container gateway's to open")
        return gid

    # -- the scenario ---------------------------------------------------------------------------
    def scenario(self):
        ct = self.ct
        from ttquant.core.rings.names import tick_ring
        ticks = RingWatch(tick_ring(VENUE))
        with Step("1 start"):
            ct.write(f"/etc/systemd/system/{MD}.d/e2e-faults.conf", "[Service]\nEnvironment=TTQ_TEST_FAULTS=1\n")
            ct.systemctl("daemon-reload")
            t_start = now_ns()
            p = ct.systemctl("start", STACK, check=False, timeout=180)
            if p.returncode != 0:
                raise E2EError(f"expected `systemctl start {STACK}` to succeed, saw exit {p.returncode}: "
                               f"{p.stderr.strip()}\n{self.units_state()}")
            log(f"`systemctl start {STACK}` returned after {(now_ns() - t_start) / 1e6:.0f} ms")
            units = self.stack_units()
            for unit in units:             # it returns once every daemon said READY=1
                if unit == SHIP:            # ordered after the target: the start does not wait for it
                    continue
                self.expect_running(unit)
            if SHIP not in units:
                raise E2EError(f"expected {TARGET} to want {SHIP} (enabled by the playbook), saw {units}")
            self.wait_running(SHIP, 60)
            first = ticks.first_after(t_start, 60, "a tick in the ring after the start")
            log(f"units: {', '.join(units)}; first tick {(first - t_start) / 1e6:.0f} ms after the start")
            gw = ct.show(GATEWAY, "ActiveState", "SubState", "StatusText")
            log(f"gateway READY (active/running under Type=notify): {gw.get('StatusText', '')!r}")

        with Step("2 SIGKILL md"):
            before = self.main_pid(MD)
            restarts = int(ct.show(MD, "NRestarts")["NRestarts"])
            hostpid = ct.host_pid(before)
            ticks.poll_all()
            t_kill = now_ns()
            os.kill(hostpid, signal.SIGKILL)
            first = ticks.first_after(t_kill, 15, "a tick from the restarted md")
            ms = (first - t_kill) / 1e6
            self.expect_restarted(MD, before, restarts)
            self.results["restart_ms"] = round(ms)
            log(f"restart_ms={ms:.0f} (kill to first new tick; target < {RESTART_TARGET_MS}); "
                f"{self.restart_breakdown(MD, t_kill, first)}")
            if ms > RESTART_LIMIT_MS:
                raise E2EError(f"expected md's first tick within {RESTART_LIMIT_MS} ms of SIGKILL, saw {ms:.0f} ms")

        with Step("3 md hangs: watchdog"):
            before = self.main_pid(MD)
            props = ct.show(MD, "NRestarts", "WatchdogUSec", "Environment")
            if "TTQ_TEST_FAULTS=1" not in props.get("Environment", ""):
                raise E2EError(f"expected {MD} to run with TTQ_TEST_FAULTS=1 (drop-in), saw "
                               f"Environment={props.get('Environment')!r}")
            restarts = int(props["NRestarts"])
            hostpid = ct.host_pid(before)
            epoch = ticks.header().get("writer_epoch")
            t_sig = now_ns()
            os.kill(hostpid, signal.SIGUSR2)
            # the new md attaches as the ring's writer (a new epoch); its first tick is the restart's end
            wait_until(lambda: ticks.ensure() and ticks.header().get("writer_epoch") != epoch, 30,
                       f"a new writer of the tick ring after the hang (watchdog {props.get('WatchdogUSec')})",
                       interval=0.002)
            attached = ticks.header()["writer_attached_ns"]
            first = ticks.first_after(max(attached, t_sig), 15, "a tick from md restarted by the watchdog")
            ms = (first - t_sig) / 1e6
            self.expect_restarted(MD, before, restarts)
            journal = self.journal(MD, since_ns=t_sig)
            if "watchdog" not in journal.lower():
                raise E2EError(f"expected systemd to log a watchdog timeout for {MD}, saw:\n{_tail(journal, 15)}")
            self.results["watchdog_restart_ms"] = round(ms)
            log(f"watchdog_restart_ms={ms:.0f} (hang to first new tick; WatchdogUSec={props.get('WatchdogUSec')}); "
                f"{self.restart_breakdown(MD, t_sig, first)}")
            limit = _usec_ms(props.get("WatchdogUSec", "")) + RESTART_LIMIT_MS
            if ms > limit:
                raise E2EError(f"expected md's first tick within the watchdog's limit + {RESTART_LIMIT_MS} ms "
                               f"({limit:.0f} ms) of the hang, saw {ms:.0f} ms")

        with Step("4 trading through gateway and strategy kills"):
            self.trading_step()

        with Step("5 sidecars: metrics and the shipper"):
            self.metrics_step()
            self.shipping_step()

        with Step("6 stop"):
            self.stop_step()

        with Step("7 the database holds the journal"):
            self.database_matches_journal()

        with Step("8 second playbook run"):
            changed, out = self.playbook("ansible-2.log")
            if changed != 0:
                tasks = _changed_tasks(out)
                raise E2EError(f"expected changed=0 on the second run, saw changed={changed}: "
                               f"{'; '.join(tasks) or 'see build/e2e/last-run/ansible-2.log'}")

        with Step("9 the Binance adapter, its key from LoadCredential"):
            self.binance_step()
        ticks.close()

    # -- step 9: the Binance adapter -------------------------------------------------------------
    def binance_step(self):
        """The gateway with the Binance adapter against the venue's signed REST, its key handed by
        systemd (LoadCredential=) from the root-only file the playbook wrote; the key's secret
        nowhere else."""
        ct = self.ct
        rest_url = f"http://127.0.0.1:{self.rest_port}"
        changed, out = self.playbook("ansible-3.log", "-e", "ttquant_e2e_gateway_adapter=binance",
                                     "-e", f"ttquant_sim_rest_url={rest_url}")
        with open(ct.path(f"/etc/ttquant/gateway.{VENUE}.toml"), "rb") as f:
            adapter = tomllib.load(f)["adapter"]
        want = {"kind": "binance", "environment": "custom", "rest_url": rest_url, "credentials": VENUE}
        if changed == 0 or {k: adapter.get(k) for k in want} != want:
            raise E2EError(f"expected the third playbook run to point the gateway at the venue's REST ({want}), "
                           f"saw changed={changed}, [adapter] {adapter}")
        log(f"playbook with the Binance adapter: changed {', '.join(_changed_tasks(out))}")
        self.expect_key_deployed()

        strategies = [u for u in self.stack_units() if u.startswith("ttquant-strategy@")]
        unit = strategies[0]
        with open(ct.path(f"/etc/ttquant/strategy.{unit.split('@', 1)[1].rsplit('.', 1)[0]}.toml"), "rb") as f:
            sid = int(tomllib.load(f)["strategy_id"])
        t_start = now_ns()
        p = ct.systemctl("start", STACK, check=False, timeout=180)
        if p.returncode != 0:
            raise E2EError(f"expected `systemctl start {STACK}` with the Binance adapter to succeed, saw exit "
                           f"{p.returncode}: {p.stderr.strip()}\n{self.units_state()}\n"
                           f"{_tail(self.journal(GATEWAY, since_ns=t_start), 20)}")
        for u in (MD, GATEWAY, unit):
            self.expect_running(u)
        connected = [line for line in self.journal(GATEWAY, since_ns=t_start).splitlines()
                     if "Binance" in line and f"at {rest_url}" in line]
        if not connected:
            raise E2EError(f"expected {GATEWAY}'s log to say the Binance adapter is connected to {rest_url}, saw:\n"
                           f"{_tail(self.journal(GATEWAY, since_ns=t_start), 20)}")
        log(f"gateway READY with the Binance adapter: {connected[0].split(': ', 1)[-1][:200]}")
        # orders and the user data stream on the sim's WebSocket API (REST only as its fallback), the
        # Ed25519 key's session logged on
        ws_api = f"connected to ws://127.0.0.1:{self.sim_port}/ws-api/v3, logged on"
        wait_until(lambda: ws_api in self.journal(GATEWAY, since_ns=t_start), 30,
                   f"{GATEWAY}'s log to say '{ws_api}'", interval=0.5)
        self.expect_credential_private((MD, unit))

        # the strategy's orders reach the venue, under this key's account
        mine = f"t{sid}-"
        try:
            first = wait_until(lambda: (lambda got: len(got) >= 2 and got)(self.binance_orders(mine)), 60,
                               f"strategy {sid}'s orders ({mine}*) in the venue's record", interval=0.5)
        except E2EError:
            raise E2EError(f"expected strategy {sid}'s orders at the venue's REST order entry, saw "
                           f"{self.binance_orders(mine)[:5]}; venue {str(self.sim_get('/_sim/status'))[:200]}\n"
                           f"{_tail(self.journal(GATEWAY, since_ns=t_start), 15)}\n"
                           f"{_tail(self.journal(unit, since_ns=t_start), 10)}") from None
        open_now = self.venue_signed("/api/v3/openOrders", symbol="BTCUSDT")
        log(f"{len(first)} orders of strategy {sid} in the venue's record (e.g. {first[0]}); signed openOrders "
            f"with the test's own key: {len(open_now)} open")

        # a gateway killed mid-run comes back with its key (systemd copies it again) and resends nothing
        before = self.main_pid(GATEWAY)
        restarts = int(ct.show(GATEWAY, "NRestarts")["NRestarts"])
        t_kill = now_ns()
        os.kill(ct.host_pid(before), signal.SIGKILL)
        self.expect_restarted(GATEWAY, before, restarts, timeout=30)
        log(f"gateway (Binance adapter) back (READY, reconciled over signed REST) {(now_ns() - t_kill) / 1e6:.0f} ms "
            f"after SIGKILL")
        n = len(self.binance_orders(mine))
        wait_until(lambda: len(self.binance_orders(mine)) > n, 60, "new orders at the venue after the gateway restart",
                   interval=0.5)
        orders = self.binance_orders(mine)
        ids = [o["clientOrderId"] for o in orders]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise E2EError(f"expected every order at the venue once, saw client order ids more than once: {twice[:10]}")
        self.results["binance_orders"] = len(orders)

        self.stop_step()
        self.expect_secret_nowhere()

    def expect_key_deployed(self):
        """The drop-in hands the key to the gateway; the file is root's alone."""
        ct = self.ct
        path = f"/etc/ttquant/credentials/{VENUE}.toml"
        loaded = self.load_credentials(GATEWAY)
        if loaded != [[VENUE, path]]:
            raise E2EError(f"expected {GATEWAY} to load one credential, {VENUE} from {path}, its LoadCredential "
                           f"property says {loaded}")
        mode = ct.run(["stat", "-c", "%a %U %G", path, os.path.dirname(path)]).stdout.split("\n")
        if mode[:2] != ["600 root root", "700 root root"]:
            raise E2EError(f"expected {path} root:root 0600 in a root-only directory, saw {mode[:2]}")
        p = ct.run(["runuser", "-u", "ttquant", "--", "cat", path], check=False)
        if p.returncode == 0 or p.stdout:
            raise E2EError(f"expected user ttquant to be refused {path}, saw exit {p.returncode}")
        log(f"{GATEWAY}: LoadCredential={loaded[0][0]}:{loaded[0][1]}; {path} root:root 0600 (dir 0700), user "
            f"ttquant refused ({p.stderr.strip()[:80]})")

    def load_credentials(self, unit) -> list:
        """The unit's LoadCredential= as the manager holds it ([[id, path], ...]): asked over D-Bus, since
        systemd 252's `systemctl show -p LoadCredential` prints it as [unprintable]."""
        import json
        obj = "/org/freedesktop/systemd1/unit/" + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
        p = self.ct.run(["busctl", "--json=short", "get-property", "org.freedesktop.systemd1", obj,
                         "org.freedesktop.systemd1.Service", "LoadCredential"], check=False)
        try:
            return json.loads(p.stdout)["data"]
        except (ValueError, KeyError):
            raise E2EError(f"expected busctl to give {unit}'s LoadCredential property, saw exit {p.returncode}: "
                           f"{p.stdout.strip()[:200]} {p.stderr.strip()[:200]}") from None

    def expect_credential_private(self, neighbours=()):
        """systemd's copy for the running gateway: there, and no one's but its owner's."""
        ct = self.ct
        copy = f"/run/credentials/{GATEWAY}/{VENUE}"
        st = ct.run(["stat", "-c", "%a %U", copy], check=False)
        if st.returncode != 0:
            raise E2EError(f"expected systemd's copy of the key at {copy} while the gateway runs, saw: "
                           f"{st.stderr.strip()}")
        mode, owner = st.stdout.split()
        if int(mode, 8) & 0o077:
            raise E2EError(f"expected {copy} readable by its owner alone, saw mode {mode} ({owner})")
        # every daemon runs as ttquant, so the copy's mode does not keep the others out: their units'
        # InaccessiblePaths=/run/credentials does; looked at from inside each one's mount namespace, the
        # gateway's own first (it must see it there, or nsenter could not look and the check would prove nothing)
        own = ct.systemctl("show", "-p", "MainPID", "--value", GATEWAY).stdout.strip()
        mine = ct.run(["nsenter", "-t", own, "-m", "--", "test", "-s", copy], check=False)
        if mine.returncode != 0:
            raise E2EError(f"expected the gateway (pid {own}) to see its own key at {copy} from its mount namespace, "
                           f"saw: {mine.stderr.strip()}")
        for unit in neighbours:
            pid = ct.systemctl("show", "-p", "MainPID", "--value", unit).stdout.strip()
            seen = ct.run(["nsenter", "-t", pid, "-m", "--", "test", "-s", copy], check=False)
            if seen.returncode == 0:
                raise E2EError(f"expected {unit} (pid {pid}) not to see the gateway's key at {copy}, but it reads it")
        log(f"systemd's copy {copy}: mode {mode} owner {owner}; out of sight of {', '.join(neighbours)}")

    def binance_orders(self, prefix: str) -> list[dict]:
        """The venue's record of the orders whose client order id starts with prefix: GET
        /_sim/binance/orders, else (a venue without it) signed openOrders with the test's own key."""
        try:
            orders = self.sim_get("/_sim/binance/orders")["orders"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            orders = self.venue_signed("/api/v3/openOrders", symbol="BTCUSDT")
        return [o for o in orders if str(o.get("clientOrderId", "")).startswith(prefix)]

    def venue_signed(self, path: str, **params):
        """A signed GET on the venue's REST order entry with the test's own key (HMAC-SHA256, as Binance):
        the same account as the gateway's (the venue has one)."""
        import hashlib
        import hmac
        import json
        query = urllib.parse.urlencode({**params, "recvWindow": 10000, "timestamp": int(time.time() * 1000)})
        signature = hmac.new(self.query_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}?{query}&signature={signature}",
                                     headers={"X-MBX-APIKEY": self.query_key})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise E2EError(f"expected the venue to answer GET {path} signed with the test's key, saw HTTP {exc.code}: "
                           f"{exc.read()[:200]!r}") from None

    def expect_secret_nowhere(self):
        """The secret is in the root-only file (the search finds it there) and in nothing else the
        deployment shows: the journal (every field of every entry, Ansible's module logs too), the
        config and unit files, the gateway unit's properties, the Ansible runs' output."""
        ct = self.ct
        secret = self.private_pem.splitlines()[1]      # the private key's base64 line, the key itself
        with open(ct.path(f"/etc/ttquant/credentials/{VENUE}.toml")) as f:
            if secret not in f.read():
                raise E2EError(f"expected the run's secret in /etc/ttquant/credentials/{VENUE}.toml (the search "
                               f"must find it where it is), it is not")
        ct.run(["journalctl", "--sync"])
        journal = ct.run(["journalctl", "-b", "--no-pager", "-o", "json", "--all"], timeout=120).stdout
        places = {"the journal (-o json --all)": journal,
                  f"systemctl show {GATEWAY}": ct.systemctl("show", GATEWAY).stdout}
        keys_dir = ct.path("/etc/ttquant/credentials")
        for top in ("/etc/ttquant", "/etc/systemd/system"):
            for d, _, files in os.walk(ct.path(top)):
                for name in files:
                    path = os.path.join(d, name)
                    if os.path.commonpath([path, keys_dir]) == keys_dir or os.path.islink(path):
                        continue
                    with open(path, errors="replace") as f:
                        places["/" + os.path.relpath(path, ct.path("/"))] = f.read()
        for log_path in self.logs:
            if os.path.basename(log_path).startswith("ansible"):
                places[os.path.basename(log_path)] = _read(log_path)
        found = sorted(where for where, text in places.items() if secret in text)
        if found:
            raise E2EError(f"expected the API secret nowhere but the credentials file, found it in: {found}")
        log(f"the secret is in /etc/ttquant/credentials/{VENUE}.toml only: not in the journal "
            f"({journal.count(chr(10))} entries), {len(places) - 2} config/unit files and Ansible logs, "
            f"or systemctl show")

    def trading_step(self):
        from ttquant.core.instruments import InstrumentTable
        from ttquant.core.rings.names import exec_ring, instruments_file
        ct = self.ct
        strategies = [u for u in self.stack_units() if u.startswith("ttquant-strategy@")]
        if not strategies:
            raise E2EError(f"expected a strategy unit wanted by {TARGET} (the local inventory's "
                           f"strategies.conf drop-in), saw none")
        unit = strategies[0]
        name = unit.split("@", 1)[1].rsplit(".", 1)[0]
        with open(ct.path(f"/etc/ttquant/strategy.{name}.toml"), "rb") as f:
            sid = int(tomllib.load(f)["strategy_id"])
        table = InstrumentTable.load(instruments_file(VENUE))
        execs = RingWatch(exec_ring(VENUE))
        reports = []

        def venue_fills():
            return [f for f in self.sim_get("/_sim/orders")["fills"] if f["strategy_id"] == sid]

        def drain():
            reports.extend(execs.poll_all())
            return reports

        # a: it trades
        wait_until(lambda: drain() is not None and len(venue_fills()) >= 2, 90,
                   f"fills for strategy {name} (id {sid}) at the venue")
        # b: the gateway dies mid-run and comes back
        before = self.main_pid(GATEWAY)
        restarts = int(ct.show(GATEWAY, "NRestarts")["NRestarts"])
        t_kill = now_ns()
        os.kill(ct.host_pid(before), signal.SIGKILL)
        self.expect_restarted(GATEWAY, before, restarts, timeout=30)
        log(f"gateway back (READY) {(now_ns() - t_kill) / 1e6:.0f} ms after SIGKILL")
        n = len(venue_fills())
        wait_until(lambda: drain() is not None and len(venue_fills()) > n, 60, "fills after the gateway restart")
        # c: the record agrees
        state = self.sim_get("/_sim/orders")
        twice = {k: c for k, c in state["new_requests"].items() if k.startswith(f"{sid}/") and c > 1}
        if twice:
            raise E2EError(f"expected every order sent to the venue once, saw NEW sent more than once: {twice}")
        self.expect_fills_reported(venue_fills, drain, execs)
        # d: the strategy dies holding a position and comes back with it
        def holding():
            pos = _positions(venue_fills(), table)
            return pos if any(pos.values()) else None
        pos = wait_until(holding, 60, f"strategy {name} to hold a position")
        self.expect_positions_agree(unit, venue_fills, table)
        before = self.main_pid(unit)
        restarts = int(ct.show(unit, "NRestarts")["NRestarts"])
        os.kill(ct.host_pid(before), signal.SIGKILL)
        self.expect_restarted(unit, before, restarts, timeout=30)
        log(f"strategy {name} killed holding {pos}; restarted")
        self.expect_positions_agree(unit, venue_fills, table)
        self.expect_fills_reported(venue_fills, drain, execs)
        execs.close()

    def expect_fills_reported(self, venue_fills, drain, execs):
        def missing():
            drain()
            got = {r.trade_id for r in drain() if getattr(r, "last_qty", 0) > 0}
            return sorted({f["trade_id"] for f in venue_fills()} - got)
        try:
            wait_until(lambda: not missing(), 10, "every venue fill in the exec ring")
        except E2EError:
            lost = missing()
            raise E2EError(f"expected every fill the venue made to be reported on /ttq.{VENUE}.exec, saw "
                           f"{len(lost)} missing (trade ids {lost[:10]}); exec reader lost "
                           f"{execs.reader.lost if execs.reader else '?'} records") from None

    def expect_positions_agree(self, unit, venue_fills, table, timeout=30):
        last = {}

        def agree():
            v1 = _positions(venue_fills(), table)
            mine = strategy_positions(self.ct.show(unit, "StatusText").get("StatusText", ""))
            v2 = _positions(venue_fills(), table)
            last.update(venue=v2, strategy=mine)
            return v1 == v2 and mine is not None and _nonzero(mine) == _nonzero(v2)
        try:
            wait_until(agree, timeout, "positions to agree")
        except E2EError:
            raise E2EError(f"expected {unit}'s positions (its STATUS=) to equal the venue's fills, saw strategy "
                           f"{last.get('strategy')} venue {last.get('venue')}") from None

    def stop_step(self):
        ct = self.ct
        units = self.stack_units()
        t_stop = now_ns()
        p = ct.systemctl("stop", STACK, check=False, timeout=120)
        if p.returncode != 0:
            raise E2EError(f"expected `systemctl stop {STACK}` to succeed, saw exit {p.returncode}: {p.stderr}")
        log(f"`systemctl stop {STACK}` returned after {(now_ns() - t_stop) / 1e6:.0f} ms")
        # it returns once the stack is down (ttquant@.service waits for md, which stops last)
        bad = []
        for unit in units:
            s = ct.show(unit, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "MainPID")
            if s["ActiveState"] != "inactive" or s["Result"] != "success" or s["ExecMainStatus"] != "0":
                bad.append(f"{unit}: {s}")
        if bad:
            raise E2EError("expected every unit inactive with exit 0, saw:\n" + "\n".join(bad))
        ct.run(["journalctl", "--flush"])
        ct.run(["journalctl", "--sync"])
        for unit in units:
            j = self.journal(unit, since_ns=t_stop)
            if "Deactivated successfully" not in j:
                raise E2EError(f"expected the journal of {unit} to show 'Deactivated successfully' after the stop "
                               f"(exit 0), saw:\n{_tail(j, 10)}")
        # the host-wide sidecar is not part of the stack: stopped on its own, exit 0 too
        ct.systemctl("stop", METRICS, timeout=60)
        s = ct.show(METRICS, "ActiveState", "Result", "ExecMainStatus")
        if (s["ActiveState"], s["Result"], s["ExecMainStatus"]) != ("inactive", "success", "0"):
            raise E2EError(f"expected {METRICS} inactive with exit 0 after its stop, saw {s}")
        # PostgreSQL's backends carry the login role's name ("postgres: 15/main: ttquant ttquant ...")
        left = [(pid, cmd) for pid, cmd in ct.processes() if "ttquant" in cmd and not cmd.startswith("postgres:")]
        if left:
            raise E2EError(f"expected no ttquant process after the stop, saw: {left}")
        on_disk = ct.run(["sh", "-c", "ls /var/log/journal/*/ 2>/dev/null | head -3"], check=False).stdout.strip()
        if not on_disk:
            raise E2EError("expected the journal on disk in /var/log/journal after --flush, saw nothing")
        journals = ct.run(["sh", "-c", "for d in /var/lib/ttquant/journal/*/; do [ -d \"$d\" ] && "
                           "/opt/ttquant/venv/bin/ttquant journal ls \"$d\"; done"], check=False).stdout.strip()
        if journals:
            log(f"recorder journal files after the stop:\n{journals}")
        torn = _torn_rows(journals)
        if torn:
            raise E2EError(f"expected the recorder's journal files whole after a clean stop, saw torn bytes: {torn}")
        log(f"{len(units)} units exited 0; no ttquant process left; journal flushed")

    # -- the sidecars ---------------------------------------------------------------------------
    def psql(self, sql: str) -> str:
        """One query in the container's database, as its superuser (peer authentication)."""
        p = self.ct.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                         "-p", str(self.db_port), "-d", DATABASE, "-c", sql], check=False, timeout=30)
        if p.returncode != 0:
            raise E2EError(f"expected `{sql}` to run in the container's database (port {self.db_port}), saw exit "
                           f"{p.returncode}: {p.stderr.strip()}")
        return p.stdout.strip()

    def expect_migrated(self):
        from ttquant.sidecars.db.migrate import migrations
        versions = sorted(migrations())
        rows = self.psql("SELECT version, variant FROM schema_migrations ORDER BY version")
        applied = [tuple(line.split("|")) for line in rows.splitlines()]
        if [int(v) for v, _ in applied] != versions:
            raise E2EError(f"expected migrations {versions} applied by the playbook (ttquant db migrate), "
                           f"saw {applied}")
        variants = sorted({variant for _, variant in applied})
        log(f"PostgreSQL {self.psql('SHOW server_version')} on 127.0.0.1:{self.db_port} in the container; "
            f"migrations {versions} applied (variants {', '.join(variants)})")

    def shipped_counts(self) -> dict[str, int]:
        out = self.psql("SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM quotes), "
                        "(SELECT count(*) FROM exec_reports)")
        return dict(zip(("trades", "quotes", "exec_reports"), map(int, out.split("|"))))

    def scrape(self) -> dict[str, float]:
        """GET /metrics from inside the container: {series with labels: value}."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        p = self.ct.run(["python3", "-c", f"import urllib.request, sys; sys.stdout.write(urllib.request.urlopen("
                         f"{url!r}, timeout=10).read().decode())"], check=False, timeout=30)
        if p.returncode != 0:
            raise E2EError(f"expected {url} to answer inside the container, saw exit {p.returncode}: "
                           f"{p.stderr.strip()[-500:]}\n{_tail(self.journal(METRICS), 15)}")
        series = {}
        for line in p.stdout.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    series[name] = float(value)
                except ValueError:
                    raise E2EError(f"expected Prometheus text from {url}, saw the line {line!r}") from None
        return series

    def metrics_step(self):
        ct = self.ct
        p = ct.systemctl("start", METRICS, check=False, timeout=60)
        if p.returncode != 0:
            raise E2EError(f"expected `systemctl start {METRICS}` to succeed (READY=1 once listening), saw exit "
                           f"{p.returncode}: {p.stderr.strip()}\n{_tail(self.journal(METRICS), 15)}")
        self.expect_running(METRICS)
        first = self.scrape()
        ttq = sorted(k for k in first if k.startswith("ttq_"))
        if not ttq:
            raise E2EError(f"expected ttq_ series in /metrics, saw {len(first)} series: {sorted(first)[:10]}")

        def moved():
            now = self.scrape()
            return sorted(k for k in now if k.startswith("ttq_") and k in first and now[k] > first[k])
        grew = wait_until(moved, 30, "a ttq_ series to grow between two scrapes", interval=1.0)
        names = sorted({k.split("{")[0] for k in ttq})
        log(f"/metrics on 127.0.0.1:{self.metrics_port}: {len(ttq)} ttq_ series ({len(names)} names, e.g. "
            f"{', '.join(names[:6])}); growing: {', '.join(grew[:4])}")
        # the one listening socket on that port is on the configured address
        listen = ct.run(["ss", "-Htlnp", f"sport = :{self.metrics_port}"], check=False).stdout.split("\n")
        addrs = sorted({line.split()[3] for line in listen if line.strip()})
        if addrs != [f"127.0.0.1:{self.metrics_port}"]:
            raise E2EError(f"expected metrics to listen on 127.0.0.1:{self.metrics_port} only, saw {addrs}")
        # it reads the segments; the unit gives it /dev/shm read-only
        pid = self.main_pid(METRICS)
        probe = ct.run(["nsenter", "-t", str(pid), "-m", "--", "touch", "/dev/shm/ttq-e2e-metrics-probe"],
                       check=False)
        if probe.returncode == 0 or "Read-only" not in probe.stderr:
            ct.run(["rm", "-f", "/dev/shm/ttq-e2e-metrics-probe"], check=False)
            raise E2EError(f"expected /dev/shm read-only in {METRICS}'s mount namespace, a write gave exit "
                           f"{probe.returncode}: {probe.stderr.strip()}")

    def shipping_step(self):
        before = self.shipped_counts()

        def rose():
            now = self.shipped_counts()
            return now if sum(now.values()) > sum(before.values()) and now["exec_reports"] > 0 else None
        try:
            after = wait_until(rose, 60, "the shipper's rows to rise in the database (exec reports too)",
                               interval=1.0)
        except E2EError:
            raise E2EError(f"expected the shipper's rows to rise, saw {before} then {self.shipped_counts()}; "
                           f"{SHIP}: {self.ct.show(SHIP, 'ActiveState', 'StatusText')}\n"
                           f"{_tail(self.journal(SHIP), 15)}") from None
        log(f"rows in the container's database: {before} -> {after}; {SHIP}: "
            f"{self.ct.show(SHIP, 'StatusText').get('StatusText', '')!r}")

    def journal_counts(self) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        """What the recorder's journal files hold (read from the host through the container's
        tree): {table: rows the shipper makes of them}, {stream: (ring_created_ns, end position)}, and
        sums of values as exact decimals: trade prices and filled quantities."""
        from ttquant.core.journal.journal_file import journal_files
        from ttquant.core.journal.replay import recorded_rings
        from ttquant.core.records import EventKind
        counts = {"trades": 0, "quotes": 0, "exec_reports": 0}
        sums = {"trade_price": Decimal(0), "fill_qty": Decimal(0)}
        ends = {}
        for kind, path in recorded_rings(self.ct.path("/var/lib/ttquant/journal"))[VENUE].items():
            files = [f for f in journal_files(path) if f.count]
            table = None
            for f in files:
                table = f.instruments or table
                recs = f.records
                if kind == "ticks":
                    trades = recs[recs["kind"] == EventKind.TRADE]
                    counts["trades"] += len(trades)
                    counts["quotes"] += int((recs["kind"] == EventKind.BBO).sum())
                    for iid, price in zip(trades["instrument_id"].tolist(), trades["price"].tolist()):
                        sums["trade_price"] += Decimal(price).scaleb(-table.get(iid).price_precision)
                else:
                    counts["exec_reports"] += f.count
                    fills = recs[recs["last_qty"] > 0]
                    for iid, qty in zip(fills["instrument_id"].tolist(), fills["last_qty"].tolist()):
                        sums["fill_qty"] += Decimal(qty).scaleb(-table.get(iid).size_precision)
            if files:
                ends[f"{VENUE}.{kind}"] = (files[-1].ring_created_ns, files[-1].next_position)
        return counts, ends, sums

    def database_matches_journal(self):
        ct = self.ct
        expected, ends, sums = self.journal_counts()
        # the stack is down: started alone, the shipper loads what the recorder flushed at its stop
        p = ct.systemctl("start", SHIP, check=False, timeout=150)
        if p.returncode != 0:
            raise E2EError(f"expected `systemctl start {SHIP}` alone to succeed, saw exit {p.returncode}: "
                           f"{p.stderr.strip()}\n{_tail(self.journal(SHIP), 15)}")

        def marks():
            rows = self.psql(f"SELECT stream, ring_created_ns, next_position FROM ship_watermarks "
                             f"WHERE stream LIKE '{VENUE}.%'")
            return {stream: (int(c), int(n)) for stream, c, n in (line.split("|") for line in rows.splitlines())}

        orders_journal = ct.path(f"/var/lib/ttquant/gateway/{VENUE}.orders.journal")
        run_files = [n for n in os.listdir(ct.path("/var/lib/ttquant/runs")) if n.endswith(".json")]

        def at_end(stream, mark):
            if stream.endswith(".orders"):      # the gateway's order journal: a byte offset
                return mark[1] == os.path.getsize(orders_journal)
            if stream.endswith(".runs"):        # the strategies' run records: the files it has taken
                return mark[1] == len(run_files)
            return mark in ends.values()        # a recorded ring's: (ring, next position)

        def caught_up():
            # every watermark (one per stream the shipper keeps) at the end of what it reads
            return self.shipped_counts() == expected and all(at_end(k, m) for k, m in marks().items())
        try:
            wait_until(caught_up, 60, "the shipper to catch up with the journal")
        except E2EError:
            raise E2EError(f"expected the database to hold the journal's rows exactly and the watermarks at "
                           f"the journal's ends: journal {expected}, ends {ends}; database {self.shipped_counts()}, "
                           f"watermarks {marks()}; {ct.show(SHIP, 'StatusText')}") from None
        got = self.shipped_counts()
        # the values, exact: numeric columns summed in the database against the journal's fixed point
        got_sums = dict(zip(("trade_price", "fill_qty"), map(Decimal, self.psql(
            "SELECT coalesce(sum(price), 0), (SELECT coalesce(sum(last_qty), 0) FROM exec_reports) FROM trades")
            .split("|"))))
        if got_sums != sums or not sums["fill_qty"]:
            raise E2EError(f"expected the database's sums equal to the journal's (and some fills), journal {sums}, "
                           f"database {got_sums}")
        # the gateway's orders, its starts in the audit log, a row per strategy run (a run SIGKILLed
        # by the restart check has no stop; the others have theirs)
        runs, stopped, orders, starts = map(int, self.psql(
            "SELECT (SELECT count(*) FROM strategy_runs), (SELECT count(*) FROM strategy_runs WHERE stopped_at "
            "IS NOT NULL), (SELECT count(*) FROM orders), (SELECT count(*) FROM audit_log WHERE action = "
            "'gateway_start')").split("|"))
        if runs != len(run_files) or not runs or not stopped or not orders or not starts:
            raise E2EError(f"expected a strategy_runs row per run record ({len(run_files)}), stopped ones, and "
                           f"orders and gateway starts shipped; saw {runs} runs ({stopped} stopped), {orders} "
                           f"orders, {starts} gateway starts")
        ct.systemctl("stop", SHIP, timeout=60)
        s = ct.show(SHIP, "ActiveState", "Result", "ExecMainStatus")
        if (s["ActiveState"], s["Result"], s["ExecMainStatus"]) != ("inactive", "success", "0"):
            raise E2EError(f"expected {SHIP} inactive with exit 0 after its stop, saw {s}")
        self.results["shipped_rows"] = sum(got.values())
        log(f"database = journal: {got}; sums {got_sums}; watermarks at the journal's ends {ends}")

    # -- unit helpers ---------------------------------------------------------------------------
    def wait_running(self, unit, timeout):
        def up():
            s = self.ct.show(unit, "ActiveState", "SubState")
            if s.get("ActiveState") == "failed":
                raise E2EError(f"expected {unit} to come up, saw it failed: {s}\n{_tail(self.journal(unit), 20)}")
            return (s.get("ActiveState"), s.get("SubState")) == ("active", "running")
        try:
            wait_until(up, timeout, f"{unit} active/running")
        except E2EError as exc:
            raise E2EError(f"{exc}; {self.ct.show(unit, 'ActiveState', 'SubState', 'StatusText')}\n"
                           f"{_tail(self.journal(unit), 20)}") from None

    def stack_units(self) -> list[str]:
        wants = self.ct.show(TARGET, "Wants").get("Wants", "").split()
        units = [u for u in wants if u.startswith("ttquant-")]
        if not units:
            raise E2EError(f"expected {TARGET} to want the stack's units, saw Wants={wants}")
        return sorted(units)

    def main_pid(self, unit) -> int:
        pid = int(self.ct.show(unit, "MainPID")["MainPID"])
        if pid <= 0:
            raise E2EError(f"expected {unit} to have a main process, saw MainPID={pid}\n{self.units_state()}")
        return pid

    def expect_running(self, unit):
        s = self.ct.show(unit, "ActiveState", "SubState", "Type", "StatusText")
        if (s.get("ActiveState"), s.get("SubState")) != ("active", "running"):
            raise E2EError(f"expected {unit} active/running, saw {s}\n{_tail(self.journal(unit), 20)}")

    def expect_restarted(self, unit, old_pid, old_restarts, timeout=15):
        def back():
            s = self.ct.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts")
            return s["ActiveState"] == "active" and s["SubState"] == "running" and \
                int(s["MainPID"]) not in (0, old_pid) and int(s["NRestarts"]) > old_restarts and s
        try:
            wait_until(back, timeout, f"{unit} restarted by systemd")
        except E2EError:
            s = self.ct.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "Result")
            raise E2EError(f"expected systemd to restart {unit} (new MainPID, NRestarts > {old_restarts}, "
                           f"active/running), saw {s}\n{_tail(self.journal(unit), 20)}") from None

    def restart_breakdown(self, unit, t0_ns, first_tick_ns) -> str:
        """Where a restart's time went, from the unit's journal (ms after t0): the watchdog, the
        old process's end, systemd's restart, the new process's first line, READY, first tick."""
        marks = [("watchdog", "Watchdog timeout"), ("exited", "Main process exited"),
                 ("restart", "Scheduled restart job"), ("starting", "Starting "), ("first log", None),
                 ("ready", "Started ")]
        seen = {}
        out = self.ct.run(["journalctl", "--no-pager", "-o", "short-unix", "-u", unit,
                           f"--since=@{t0_ns / 1e9:.6f}"], check=False).stdout
        for line in out.splitlines():
            m = re.match(r"([\d.]+) \S+ ([^:]+): (.*)", line)
            if not m:
                continue
            ts, who, text = int(float(m.group(1)) * 1e9), m.group(2), m.group(3)
            for name, needle in marks:
                if name in seen:
                    continue
                if (needle is None and not who.startswith(("systemd", "("))) or (needle and needle in text):
                    if name == "first log" and "starting" not in seen:
                        continue
                    seen[name] = ts
        parts = [f"{name} +{(seen[name] - t0_ns) / 1e6:.0f}" for name, _ in marks if name in seen]
        return "breakdown (ms): " + ", ".join(parts + [f"first tick +{(first_tick_ns - t0_ns) / 1e6:.0f}"])

    def journal(self, unit, since_ns=None) -> str:
        cmd = ["journalctl", "--no-pager", "-o", "short-precise", "-u", unit]
        if since_ns:
            cmd.append(f"--since=@{since_ns / 1e9:.6f}")
        return self.ct.run(cmd, check=False).stdout

    def units_state(self) -> str:
        return self.ct.systemctl("list-units", "--all", "--no-legend", "--plain", "ttquant*", check=False).stdout

    # -- teardown -------------------------------------------------------------------------------
    def teardown(self, failed: bool):
        if self.torn_down:
            return
        self.torn_down = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)      # a second Ctrl-C must not cut the teardown short
        signal.alarm(0)
        t0 = time.monotonic()
        ct = self.ct
        keep = os.path.join(BUILD, "last-run")
        notes = []
        if ct is None:      # failed before anything was started: nothing to tear down, no logs
            _reap()
            return
        try:
            shutil.rmtree(keep, ignore_errors=True)
            os.makedirs(keep, exist_ok=True)
            if ct.alive() and ct.leader:
                try:
                    j = ct.run(["journalctl", "--no-pager", "-o", "short-precise", "-b"], check=False, timeout=30)
                    with open(os.path.join(keep, "journal.txt"), "w") as f:
                        f.write(j.stdout)
                    if failed:
                        units = ct.run(["journalctl", "--no-pager", "-o", "short-precise", "-n", "40", "-u",
                                        "ttquant*"], check=False, timeout=30).stdout.strip()
                        if units and "-- No entries --" not in units:
                            log(f"the ttquant units' journal (last 40 lines):\n{_clip(units)}")
                except (E2EError, subprocess.TimeoutExpired):
                    pass
        except OSError as exc:
            notes.append(f"logs not kept: {exc}")
        for sock in glob.glob(os.path.join(self.run_dir, "cp", "*")):     # Ansible's ssh masters
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "127.0.0.1"], capture_output=True,
                           timeout=10)
        try:
            clean = ct.poweroff()
            notes.append("container powered off" if clean else "container killed")
        except Exception as exc:    # never stop a teardown half way
            notes.append(f"container: {exc}")
        if self.venue is not None:
            _stop_group(self.venue)
            notes.append(f"venue-sim exited {self.venue.returncode}")
        ct.release()
        for path in self.logs + [ct.log_path]:
            if os.path.exists(path):
                try:
                    shutil.copy(path, keep)
                except OSError:
                    pass
        if os.path.isdir(self.run_dir):
            busy = mounts_under(self.run_dir)
            if busy:
                notes.append(f"NOT removed: {self.run_dir} (still mounted: {busy})")
            else:
                subprocess.run(["rm", "-rf", "--one-file-system", self.run_dir])
        if self.made_shm:
            gone = 0
            for path in glob.glob(f"{SHM}/ttq.{VENUE}.*"):
                try:
                    os.unlink(path)
                    gone += 1
                except FileNotFoundError:
                    pass
            notes.append(f"{gone} {SHM}/ttq.{VENUE}.* removed")
        left = ct.processes()
        if left:
            notes.append(f"STILL RUNNING in the container's namespace: {left[:5]}")
        if self.venue is not None and self.venue.poll() is None:
            notes.append(f"STILL RUNNING: venue-sim pid {self.venue.pid}")
        _reap()
        self.timings["teardown_s"] = time.monotonic() - t0
        log(f"teardown ({self.timings['teardown_s']:.1f} s): {'; '.join(notes)}; logs in "
            f"{os.path.relpath(keep, REPO)}/")


def _clean_stale_runs():
    """A run killed outright (SIGKILL: no teardown) leaves its container, its overlay mount and
    its directory: end them, once their run's process is gone."""
    for run_dir in glob.glob(os.path.join(BUILD, "run-*-*")):
        pid = int(run_dir.rsplit("-", 1)[1]) if run_dir.rsplit("-", 1)[1].isdigit() else 0
        if pid and os.path.exists(f"/proc/{pid}"):
            continue                # a live run (another make e2e at the same time)
        root = os.path.join(run_dir, "root")
        for d in glob.glob("/proc/[0-9]*"):
            try:
                with open(f"{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and root.encode() in argv:
                log(f"stopping the container a killed run left: pid {d[6:]}, {os.path.relpath(root, REPO)}")
                os.kill(int(d[6:]), signal.SIGKILL)
        for point in sorted(mounts_under(run_dir), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False)
        log(f"removing {os.path.relpath(run_dir, REPO)}, left by a run that was killed")
        subprocess.run(["rm", "-rf", "--one-file-system", run_dir], check=False)


def strategy_positions(status_text: str) -> dict | None:
    """The positions a strategy's STATUS= shows: `... positions SYMBOL.market=QTY ...`
    (e.g. `trading; positions BTCUSDT.spot=0.003 BTCUSDT.perp=-0.001`); None when it shows none."""
    m = re.search(r"positions?[:\s]+((?:\s*[A-Za-z0-9_./-]+=[-+]?[0-9.]+,?)*)", status_text)
    if not m:
        return None
    out = {}
    for key, qty in re.findall(r"([A-Za-z0-9_./-]+)=([-+]?[0-9.]+)", m.group(1)):
        out[key] = Decimal(qty)
    return out


def _positions(fills, table) -> dict:
    """Net position per `SYMBOL.market` from the venue's fills (raw qty at the instrument's precision)."""
    from ttquant.core.records import Side
    out: dict[str, Decimal] = {}
    for f in fills:
        inst = table[f["instrument_id"]]
        key = inst.label
        qty = inst.qty_from_raw(f["qty"])
        out[key] = out.get(key, Decimal(0)) + (qty if f["side"] == Side.BUY else -qty)
    return out


def _torn_rows(table: str) -> list[str]:
    """Rows of `ttquant journal ls` tables with something in their `torn bytes` column."""
    out, col = [], None
    for line in table.splitlines():
        if "torn bytes" in line:
            col = line.index("torn bytes")
        elif col is not None and line[col:].strip():
            out.append(line.split()[0])
    return out


def _usec_ms(text: str) -> float:
    """systemd's time span as `systemctl show` prints it (2s, 500ms, 1min 30s) -> ms."""
    units = {"us": 1e-3, "ms": 1, "s": 1e3, "min": 60e3, "h": 3600e3}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(us|ms|s|min|h)\b", text))


def _nonzero(pos: dict) -> dict:
    return {k: v for k, v in pos.items() if v}


def _changed_tasks(out: str) -> list[str]:
    tasks, task = [], None
    for line in out.splitlines():
        m = re.match(r"TASK \[(.*)\]", line)
        if m:
            task = m.group(1)
        elif line.startswith("changed:") and task:
            tasks.append(task)
    return tasks


def _stop_group(proc: subprocess.Popen):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # anything it left in its group
    except ProcessLookupError:
        pass


def _be_subreaper():
    """Orphans of what this starts (debootstrap's children when it is killed, say) come to this
    process, which reaps them, instead of to a PID 1 that may not."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)    # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _clip(text, width=300):
    """Long lines (Ansible's JSON results) cut to width."""
    return "\n".join(line if len(line) <= width else line[:width] + " ..." for line in text.splitlines())


def _tail(text, n):
    return "\n".join(text.rstrip().splitlines()[-n:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--infra-only", action="store_true",
                        help="only the machinery: root, boot, ssh, ansible ping, venue, /dev/shm bind, teardown")
    parser.add_argument("--root", default=os.environ.get("TTQ_E2E_ROOT", "overlay"), choices=["overlay", "copy"],
                        help="each run's tree: an overlay over the cached root (default) or a copy")
    args = parser.parse_args(argv)
    if os.environ.get("TTQ_SKIP_E2E") == "1":
        print("e2e: skipped (TTQ_SKIP_E2E=1)", flush=True)
        return 0
    t0 = time.monotonic()
    _be_subreaper()
    run = Run(args)

    def interrupted(signum, frame):
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    def too_long(signum, frame):
        raise E2EError(f"over the time limit (TTQ_E2E_TIMEOUT={budget} s)")
    budget = int(os.environ.get("TTQ_E2E_TIMEOUT", "900"))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(budget)
    error, code = None, 0
    try:
        run.setup()
        if args.infra_only:
            with Step("ansible ping"):
                run.ensure_ansible()
                run.ansible_ping()
            with Step("venue"):
                run.start_venue()
                run.venue_from_container()
        else:
            run.deploy()
            run.scenario()
    except Prerequisite as exc:
        error, code = f"e2e: FAILED, missing prerequisite: {exc}", 2
    except Interrupted as exc:
        error, code = f"e2e: FAILED in step [{Step.current}]: {exc}", 130
    except (E2EError, subprocess.TimeoutExpired, OSError) as exc:
        error, code = f"e2e: FAILED in step [{Step.current}]: {exc}", 1
    except BaseException:           # a bug here: still torn down, then the traceback
        run.teardown(True)
        raise
    run.teardown(error is not None)
    if error:
        print(error, file=sys.stderr, flush=True)
        return code
    total = time.monotonic() - t0
    t = run.timings
    if args.infra_only:
        print(f"e2e: infra ok root_build_s={t.get('root_build_s', 0):.1f} tree_s={t['tree_s']:.2f} "
              f"boot_s={t['boot_s']:.2f} ssh_s={t['ssh_s']:.2f} teardown_s={t['teardown_s']:.1f} "
              f"total_s={total:.1f}", flush=True)
        return 0
    log("timings: " + " ".join(f"{k}={v:.1f}" for k, v in t.items()) + f" total_s={total:.1f}")
    r = run.results
    print(f"e2e: ok restart_ms={r['restart_ms']} watchdog_restart_ms={r['watchdog_restart_ms']} "
          f"shipped_rows={r['shipped_rows']} binance_orders={r['binance_orders']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
