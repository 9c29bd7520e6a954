"""`ttquant metrics`: the host's rings and telemetry as Prometheus text, under the service runner.

It serves /metrics on one address only (127.0.0.1:9108 unless `listen` says otherwise) from
prometheus-client's HTTP server thread; each scrape reads /dev/shm afresh (collector.py), so
it needs no configuration to find a new venue, strategy or sidecar, and a process's restart
shows as a new epoch and counters starting again. READY=1 once the port is bound; the watchdog
is fed while the server thread lives.

    metrics.toml: listen = "host:port", [process]
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, default_config_path, parse_config
from ttquant.core.daemon.runner import EXIT_CONFIG, Daemon, ProcessTable, ServiceError

__all__ = ["MetricsConfig", "Metrics", "parse_listen", "DEFAULT_LISTEN"]

log = logging.getLogger("ttquant.metrics")
DEFAULT_LISTEN = "127.0.0.1:9108"


def parse_listen(text: str) -> tuple[str, int]:
    """"127.0.0.1:9108" / "[::1]:9108" -> (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen: {text!r} is not host:port (e.g. {DEFAULT_LISTEN} or [::1]:9108)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"listen: {host!r} must be an IP address (one address: it serves on nothing else)") \
                from None
    return host, int(port)


class MetricsConfig(Table):
    listen: str = DEFAULT_LISTEN                # the one address /metrics is served on
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def finish(self, base_dir: str, instance: str = "", path: str = ""):
        self.path = path
        try:
            self.host, self.port = parse_listen(self.listen)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class Metrics(Daemon):
    role = "metrics"
    schema = MetricsConfig

    @classmethod
    def load_config(cls, path: str, instance: str):
        # no /etc/ttquant/metrics.toml: the defaults (a file named on the command line must exist)
        if path == default_config_path(cls.role, instance) and not os.path.exists(path):
            return parse_config({}, cls.schema, path, instance=instance)
        return super().load_config(path, instance)

    def __init__(self, cfg: MetricsConfig, runner):
        super().__init__(cfg, runner)
        self.server = self.thread = None
        self.collector = None

    @property
    def url(self) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"http://{host}:{self.server.server_port}/metrics"

    def start(self):
        from prometheus_client import CollectorRegistry, start_http_server

        from ttquant.sidecars.metrics.collector import ShmCollector
        registry = CollectorRegistry(auto_describe=False)
        self.collector = ShmCollector()
        registry.register(self.collector)
        try:
            self.server, self.thread = start_http_server(self.cfg.port, self.cfg.host, registry)
        except (OSError, socket.gaierror) as exc:
            raise ServiceError(f"cannot serve metrics on {self.cfg.listen} ({exc.strerror or exc}); "
                               f"listen in {self.cfg.path or 'the config'}", EXIT_CONFIG) from None
        log.info("serving %s", self.url)

    def status(self) -> str:
        return f"serving {self.url}" if self.server else "starting"

    def serve(self) -> int:
        runner = self.runner
        runner.notify.ready(self.status())
        while not runner.stopping:
            if not self.thread.is_alive():
                log.error("the HTTP server thread died")
                return 1
            runner.notify.watchdog()
            runner.sleep(0.2)
        return 0

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
