"""Benchmark fixtures: peers in child processes, CPU pinning, and the tests' ring fixtures."""
import os
import pathlib
import sys

import pytest

BENCH_DIR = str(pathlib.Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from support import KERNELS_DIR, Peers  # noqa: E402

if KERNELS_DIR not in sys.path:
    sys.path.insert(0, KERNELS_DIR)

from ttq_testing import (  # noqa: E402,F401  (fixtures, found by name)
    pytest_runtest_makereport,
    ring,
    shm_left_behind,
    venue,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: part of make bench-quick (under 3 minutes)")
    try:
        import ring_kernels  # noqa: F401
    except ImportError:
        pytest.exit(f"bench kernels are not built in {KERNELS_DIR}: run `make bench`", returncode=2)


class PeerResults:
    """Figures of peers measured inside another benchmark's run (interleaved with it): each
    becomes a results.json entry of its own, a copy of that benchmark's with its extra_info."""

    def __init__(self):
        self.entries = []       # (benchmark name, impl, extra_info)

    def add(self, benchmark, impl, info):
        self.entries.append((benchmark.name, impl, info))


PEER_RESULTS = PeerResults()


@pytest.fixture
def peer_results():
    return PEER_RESULTS


def pytest_benchmark_update_json(config, benchmarks, output_json):
    by_name = {b["name"]: b for b in output_json["benchmarks"]}
    for name, impl, info in PEER_RESULTS.entries:
        parent = by_name.get(name)
        if parent is None:
            continue
        entry = dict(parent, name=f"{name}[{impl}]", fullname=f"{parent['fullname']}[{impl}]",
                     extra_info=info)
        output_json["benchmarks"].append(entry)


@pytest.fixture
def peers():
    p = Peers()
    yield p
    p.stop()


@pytest.fixture
def pinned():
    """Pin this process to CPU 0 while the benchmark runs (the peer takes CPU 1)."""
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    yield (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    os.sched_setaffinity(0, before)
