"""The e2e test's machine: a minimal Debian bookworm root made by debootstrap, cached under
build/e2e/, booted once per run with systemd-nspawn (systemd is not PID 1 on the machines this
runs on, but a booted container has its own).

- The root is built from the Debian mirror apt already uses (read from the apt sources, never
  written here), into a temporary directory renamed into place when complete, so an interrupted
  build is never taken for a cached one. Its directory name carries a hash of what goes in it
  (suite, packages, the customisation's version): a change builds a new one.
- Each run boots its own tree (an overlay over the cached root by default, or a full copy), so
  runs never see each other's state and the cache stays as built.
- The container shares the host's network (its sshd listens on a free loopback port, and the
  simulated venue on the host is on the same loopback) and the host's /dev/shm (--bind), so the
  test reads the rings the container's daemons write, from the host, with exact timings.
- Commands go in with nsenter into the namespaces of the container's PID 1: there is no D-Bus
  registration on the host (--register=no --keep-unit).

Only the standard library: this module also runs the prerequisite check, before anything of the
project is known to work.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

__all__ = ["E2EError", "Prerequisite", "log", "ensure_tools", "debian_mirror", "RootCache", "Container",
           "free_port", "mounts_under", "die_with_parent"]

SUITE = "bookworm"
VARIANT = "minbase"
# What the deployment finds on a fresh Debian host, plus what lets the test in: systemd as init,
# python3 (Ansible's and the venv's interpreter), sshd, and procps/iproute2 to look around.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-apt", "openssh-server",
            "iproute2", "procps")
# Bump when _customise() changes what it does to a new root: the cache key changes with it.
RECIPE = 1


class E2EError(Exception):
    """A failure with its explanation (what was expected, what was seen)."""


class Prerequisite(E2EError):
    """Something the test needs from the machine is missing."""


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def _run(cmd, *, check=True, timeout=None, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise E2EError(f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{_tail(proc.stdout + proc.stderr)}")
    return proc


def die_with_parent(sig=signal.SIGTERM):
    """A preexec_fn: the child gets sig when this process dies, even by SIGKILL (no teardown
    then), so no container or venue outlives the test that started it."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec():
        libc.prctl(1, int(sig), 0, 0, 0)        # PR_SET_PDEATHSIG
    return preexec


def _run_group(cmd, *, timeout, stdout, **kwargs) -> int:
    """cmd in its own process group, all of which is killed if this is interrupted (a signal
    raising here, a timeout): debootstrap's and apt's children must not outlive the run."""
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(),
                            **kwargs)
    try:
        return proc.wait(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# -- prerequisites -------------------------------------------------------------------------------
TOOLS = {   # command -> the Debian package that has it
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nsenter": "util-linux",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def ensure_tools() -> None:
    """Root, and the tools (installed from Debian's packages when missing)."""
    if os.geteuid() != 0:
        raise Prerequisite("must run as root (debootstrap, systemd-nspawn, nsenter, mounts); "
                           "run it as root, or set TTQ_SKIP_E2E=1 to skip it")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise Prerequisite(f"missing {', '.join(missing)} and no apt-get to install them")
    log(f"installing {' '.join(missing)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    proc = _run(install, check=False, env=env, timeout=600)
    if proc.returncode != 0:        # maybe only the package lists are missing or old
        _run(["apt-get", "update", "-q"], check=False, env=env, timeout=600)
        proc = _run(install, check=False, env=env, timeout=600)
    if proc.returncode != 0:
        raise Prerequisite(f"cannot install {' '.join(missing)} (no package access?): "
                           f"apt-get exit {proc.returncode}\n{_tail(proc.stdout + proc.stderr, 8)}\n"
                           f"install them by hand, or set TTQ_SKIP_E2E=1 to skip the e2e test")
    still = [tool for tool in TOOLS if shutil.which(tool) is None]
    if still:
        raise Prerequisite(f"{', '.join(still)} still missing after installing {' '.join(missing)}")


def debian_mirror(suite: str = SUITE, root: str = "/etc/apt") -> str:
    """The URI of the Debian archive apt uses for `suite` (deb822 .sources or one-line .list)."""
    found = []
    for path in sorted(glob.glob(os.path.join(root, "sources.list.d", "*.sources"))):
        with open(path) as f:
            for stanza in re.split(r"\n\s*\n", f.read()):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
                if fields.get("enabled", ["yes"])[0].lower() == "no":
                    continue
                if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
                    found.extend(fields.get("uris", []))
    lists = [os.path.join(root, "sources.list")] + sorted(glob.glob(os.path.join(root, "sources.list.d", "*.list")))
    for path in lists:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb" and line[2] == suite:
                found.append(line[1])
    for uri in found:
        if uri.startswith(("http://", "https://", "file:/")):
            return uri.rstrip("/")
    raise Prerequisite(f"no Debian {suite} archive in {root}/sources.list or {root}/sources.list.d/ "
                       f"(a 'deb' source with suite {suite}): the container's root is built from it")


# -- the cached root -----------------------------------------------------------------------------
class RootCache:
    """build/e2e/root-<key>/rootfs: a bootable bookworm tree, built once per key."""

    def __init__(self, cache_dir: str):
        self.cache_dir = cache_dir
        spec = json.dumps({"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES), "recipe": RECIPE},
                          sort_keys=True)
        self.key = hashlib.sha256(spec.encode()).hexdigest()[:12]
        self.dir = os.path.join(cache_dir, f"root-{self.key}")
        self.rootfs = os.path.join(self.dir, "rootfs")

    def cached(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, "complete"))

    def ensure(self) -> float | None:
        """The root, built if missing; returns the build's seconds, None when it was cached."""
        os.makedirs(self.cache_dir, exist_ok=True)
        import fcntl
        with open(os.path.join(self.cache_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)        # two runs at once: one builds, the other waits
            if self.cached():
                return None
            self._remove_stale()
            t0 = time.monotonic()
            tmp = os.path.join(self.cache_dir, f".tmp-root-{self.key}-{os.getpid()}")
            try:
                self._build(os.path.join(tmp, "rootfs"))
                with open(os.path.join(tmp, "complete"), "w") as f:
                    f.write(json.dumps({"suite": SUITE, "packages": sorted(PACKAGES), "recipe": RECIPE,
                                        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
                os.rename(tmp, self.dir)
            finally:
                if os.path.exists(tmp):
                    _remove_tree(tmp, unmount=True)
            return time.monotonic() - t0

    def _remove_stale(self):
        """Other keys' roots and interrupted builds (their builder is gone: we hold the lock)."""
        for entry in os.listdir(self.cache_dir):
            path = os.path.join(self.cache_dir, entry)
            if entry.startswith(".tmp-root-") or (entry.startswith("root-") and path != self.dir):
                log(f"removing stale {path}")
                _remove_tree(path, unmount=True)

    def _build(self, rootfs: str):
        mirror = debian_mirror()
        log(f"building the {SUITE} root with debootstrap ({VARIANT} + {' '.join(PACKAGES)}); about a minute")
        os.makedirs(os.path.dirname(rootfs))
        cmd = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}"]
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        if os.path.exists(keyring):
            cmd.append(f"--keyring={keyring}")
        cmd += [SUITE, rootfs, mirror]
        logfile = os.path.join(os.path.dirname(rootfs), "debootstrap.log")
        with open(logfile, "w") as out:
            rc = _run_group(cmd, stdout=out, timeout=900)
        if rc != 0:
            with open(logfile) as f:
                raise E2EError(f"debootstrap failed (exit {rc}); its log's end:\n{_tail(f.read())}")
        self._customise(rootfs, logfile)

    @staticmethod
    def _customise(rootfs: str, logfile: str):
        """What every run's boot needs, done once: package lists (a real host has them, and the
        ttquant role may ask apt for a package), no downloaded .debs, a persistent journal, no
        getty on the console (nobody logs in there), sshd's host keys made already."""
        with open(logfile, "a") as out:
            for cmd in (["apt-get", "update", "-q"], ["apt-get", "clean"]):
                rc = _run_group(["chroot", rootfs, *cmd], stdout=out, timeout=600,
                                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
                if rc != 0:
                    with open(logfile) as f:
                        raise E2EError(f"{' '.join(cmd)} in the new root failed (exit {rc}):\n{_tail(f.read())}")
        os.makedirs(os.path.join(rootfs, "var/log/journal"), exist_ok=True)
        for unit in ("console-getty.service", "getty@tty1.service", "systemd-networkd-wait-online.service"):
            link = os.path.join(rootfs, "etc/systemd/system", unit)
            if not os.path.lexists(link):
                os.symlink("/dev/null", link)
        if not glob.glob(os.path.join(rootfs, "etc/ssh/ssh_host_*_key")):
            _run(["chroot", rootfs, "ssh-keygen", "-A"])
        # systemd makes a new machine id at each boot of an empty file: runs are separate machines
        with open(os.path.join(rootfs, "etc/machine-id"), "w"):
            pass


def _remove_tree(path: str, unmount: bool = False):
    """rm -rf, never through a mount point; unmount=True first unmounts what is mounted under
    path (an interrupted debootstrap leaves /proc and /sys mounted in its target)."""
    if unmount:
        for point in sorted(mounts_under(path), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False)
    busy = mounts_under(path)
    if busy:
        raise E2EError(f"not removing {path}: still mounted there: {', '.join(busy)}")
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(path + "/"):
                out.append(point)
    return out


def free_port(avoid=range(2300, 2400)) -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice; never one of `avoid`)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


# -- one booted container ------------------------------------------------------------------------
class Container:
    """A fresh tree over the cached root, booted with systemd-nspawn in the background."""

    def __init__(self, cache: RootCache, run_dir: str, name: str, mode: str = "overlay"):
        if mode not in ("overlay", "copy"):
            raise E2EError(f"TTQ_E2E_ROOT={mode!r}: overlay or copy")
        self.cache, self.run_dir, self.name, self.mode = cache, run_dir, name, mode
        self.root = os.path.join(run_dir, "root")
        self.proc: subprocess.Popen | None = None
        self.leader = 0             # host pid of the container's PID 1 (systemd)
        self.pidns = ""             # its pid namespace (to find what runs in it, even after it died)
        self.log_path = os.path.join(run_dir, "nspawn.log")
        self._mounted = False

    # the tree
    def prepare(self) -> float:
        t0 = time.monotonic()
        os.makedirs(self.root)
        if self.mode == "overlay":
            upper, work = os.path.join(self.run_dir, "upper"), os.path.join(self.run_dir, "work")
            os.makedirs(upper)
            os.makedirs(work)
            _run(["mount", "-t", "overlay", "ttq-e2e", "-o",
                  f"lowerdir={self.cache.rootfs},upperdir={upper},workdir={work}", self.root])
            self._mounted = True
        else:
            _run(["cp", "-a", "--reflink=auto", self.cache.rootfs + "/.", self.root])
        return time.monotonic() - t0

    def path(self, inside: str) -> str:
        return os.path.join(self.root, inside.lstrip("/"))

    def write(self, inside: str, text: str, mode: int = 0o644):
        p = self.path(inside)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    # boot and shutdown
    def boot(self, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        cmd = ["systemd-nspawn", "--quiet", "--directory", self.root, "--machine", self.name, "--boot",
               "--register=no", "--keep-unit", "--bind=/dev/shm", "--console=read-only",
               "--resolv-conf=copy-host", "--timezone=off"]
        log_file = open(self.log_path, "wb")
        # SIGTERM to nspawn: it asks the container's systemd to power off
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent())
        log_file.close()
        deadline = time.monotonic() + timeout
        while not self.leader:
            self.leader = self._child_of(self.proc.pid)
            if self.proc.poll() is not None:
                raise E2EError(f"systemd-nspawn exited {self.proc.returncode} before the container started; "
                               f"its log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise E2EError(f"no container PID 1 under systemd-nspawn after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.02)
        try:
            self.pidns = os.readlink(f"/proc/{self.leader}/ns/pid")
        except OSError:
            pass
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise E2EError(f"systemd-nspawn exited {self.proc.returncode} while booting:\n{self.log_tail()}")
            # is-system-running needs the manager's private socket: it fails until systemd is up
            state = self.run(["systemctl", "is-system-running"], check=False, timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.05)
        else:
            raise E2EError(f"container not booted after {timeout:.0f} s (expected is-system-running 'running', "
                           f"saw {state!r}):\n{self.log_tail()}")
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout.strip()
            log(f"container booted degraded; failed units: {failed or '?'}")
        return time.monotonic() - t0

    @staticmethod
    def _child_of(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            return 0
        for kid in kids:    # nspawn's only long-lived child is the container's init
            try:
                with open(f"/proc/{kid}/comm") as f:
                    if f.read().strip() == "systemd":
                        return int(kid)
            except FileNotFoundError:
                pass
        return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return _tail(re.sub(r"\x1b\[[0-9;]*m", "", f.read()), lines)
        except FileNotFoundError:
            return "(no log)"

    def run(self, cmd, *, check=True, timeout=60, input=None):
        """cmd inside the container (all its namespaces, as root), a clean environment."""
        if not self.leader:
            raise E2EError("the container is not running")
        full = ["nsenter", "--target", str(self.leader), "--all", "--",
                "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *cmd]
        return _run(full, check=check, timeout=timeout, input=input)

    def systemctl(self, *args, check=True, timeout=120):
        return self.run(["systemctl", "--no-pager", "--no-ask-password", *args], check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def host_pid(self, container_pid: int) -> int:
        """The host's pid of the container's process `container_pid` (by NSpid in /proc)."""
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                with open(status) as f:
                    text = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            m = re.search(r"^NSpid:\s+(\d+)\s+(\d+)(?:\s|$)", text, re.M)
            if m and int(m.group(2)) == container_pid and self._in_container(int(m.group(1))):
                return int(m.group(1))
        raise E2EError(f"no host process for the container's pid {container_pid}")

    def _in_container(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == self.pidns
        except OSError:
            return False

    def processes(self) -> list[tuple[int, str]]:
        """(host pid, command line) of every process in the container's pid namespace."""
        out = []
        if not self.pidns:
            return out
        for d in glob.glob("/proc/[0-9]*"):
            try:
                if os.readlink(f"{d}/ns/pid") != self.pidns:
                    continue
                with open(f"{d}/cmdline", "rb") as f:
                    out.append((int(d[6:]), f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
            except OSError:
                pass
        return out

    def poweroff(self, timeout: float = 30.0) -> bool:
        """A clean shutdown (journals flushed); then harder ways. True if it went down cleanly."""
        if self.proc is None:
            return True
        clean = False
        if self.alive() and self.leader:
            self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=15)
            try:
                self.proc.wait(timeout=timeout)
                clean = True
            except subprocess.TimeoutExpired:
                log(f"container {self.name}: no poweroff after {timeout:.0f} s, killing it")
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)   # nspawn asks the container's init to halt
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            # killing a pid namespace's init kills everything in it; then nspawn itself
            for pid in (self.leader,):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        return clean

    def release(self):
        """The tree: unmounted (overlay); the caller removes the run directory."""
        if self._mounted:
            for _ in range(50):
                if _run(["umount", self.root], check=False).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                _run(["umount", "--lazy", self.root], check=False)
            self._mounted = False
