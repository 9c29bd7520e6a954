"""One way to be a daemon (DESIGN.md §7): the service runner, config schemas and examples,
systemd notify, the instance lock, the hybrid wait. See runner.py."""
from ttquant.core.daemon.config import ConfigError, Table, load_config, render_example
from ttquant.core.daemon.runner import Daemon, ServiceError, ServiceRunner, run_daemon

__all__ = ["ConfigError", "Table", "load_config", "render_example", "Daemon", "ServiceError", "ServiceRunner",
           "run_daemon"]
