"""A daemon with nothing in it but what the service runner gives every daemon, for
test_runner.py: `python toy_daemon.py INSTANCE CONFIG` runs it as `ttquant` would."""
import os
import sys
import time

import msgspec

from ttquant.core.daemon.config import Table
from ttquant.core.daemon.hybrid_wait import HybridWait
from ttquant.core.daemon.runner import (
    Daemon,
    LoopTable,
    ProcessTable,
    ServiceError,
    run_daemon,
)
from ttquant.core.rings.names import instance_lock_file


class ToyTable(Table):
    rings: str
    wait_for_file: str = ""             # start waits until this file exists
    fail: str = ""                      # "service": an expected failure; "bug": an exception
    steps_busy: int = 0                 # the first passes that find work


class ToyConfig(Table):
    toy: ToyTable
    loop: LoopTable = msgspec.field(default_factory=LoopTable)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)


class Toy(Daemon):
    role = "toy"
    schema = ToyConfig

    def locks(self):
        return [(instance_lock_file(self.cfg.toy.rings, "toy"), f"toy of {self.cfg.toy.rings!r}")]

    def start(self):
        t = self.cfg.toy
        if t.wait_for_file:
            self.runner.wait_for(f"the file {t.wait_for_file}", lambda: os.path.exists(t.wait_for_file) or None,
                                 hint="the test makes it")
        if t.fail == "service":
            raise ServiceError("the toy cannot start: told so", 3)
        if t.fail == "bug":
            raise KeyError("a bug")
        self.passes = 0
        self.reloads = 0
        print(f"toy started pid {os.getpid()} affinity {sorted(os.sched_getaffinity(0))} "
              f"policy {os.sched_getscheduler(0)}", flush=True)

    def step(self):
        self.passes += 1
        if self.runner.take_reload():
            self.reloads += 1
            print(f"toy reloaded {self.reloads}", flush=True)
        return self.passes <= self.cfg.toy.steps_busy

    def status(self):
        return f"{self.passes} passes"

    def serve(self):
        self.runner.notify.ready(self.status())
        wait = HybridWait(self.cfg.loop.wait, self.cfg.loop.spin_polls, 1, sleep=time.sleep)
        self.runner.loop(self.step, wait, gc=self.cfg.loop.gc, check_every=64)
        print(f"toy stopping after {self.passes} passes, {wait.sleeps} sleeps", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(run_daemon(Toy, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
