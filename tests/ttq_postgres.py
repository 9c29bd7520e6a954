"""A real PostgreSQL for the tests, started here: its own data directory and socket under a
temporary directory, a free port on 127.0.0.1, trust auth, stopped (and its files removed) at
the end of the session. As root the server runs as the `postgres` system user (it refuses
root). `make test` installs Debian's postgresql when its binaries are missing."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

__all__ = ["PostgresServer", "postgres", "database"]


def _bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres): `make test` "
                           "installs them (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bin = _bin_dir()
        self.root = tempfile.mkdtemp(prefix="ttq-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.proc = None
        self._as = []
        if os.geteuid() == 0:           # the server refuses to run as root
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
        subprocess.run([*self._as, os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "ttq", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.start()

    def start(self):
        self.log = open(os.path.join(self.root, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [*self._as, os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.root, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: {self._tail()}")
            r = subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not come up in 30 s: {self._tail()}")

    def stop(self, mode="fast"):
        """SIGTERM (smart), SIGINT (fast) or SIGQUIT (immediate), then wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        import signal
        self.proc.send_signal({"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode])
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()

    def _tail(self):
        with open(os.path.join(self.root, "server.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def dsn(self, dbname="postgres"):
        return f"host=127.0.0.1 port={self.port} user=ttq dbname={dbname}"

    def create_database(self):
        import psycopg
        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database(postgres):
    """A fresh database of the session's server: its dsn."""
    return postgres.dsn(postgres.create_database())
