"""Benchmark helpers: the extra_info contract of DESIGN.md §9 and peer processes."""
import multiprocessing as mp
import os
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNELS_DIR = str(ROOT / "build" / "bench" / "ext")
QUICK = os.environ.get("TTQ_BENCH_QUICK", "") not in ("", "0")


def latency_info(path, impl, samples_ns, **extra):
    """The latency contract: path, impl, n, p50/p99/p99.9/max in ns, and a log2 histogram."""
    s = np.asarray(samples_ns, dtype=np.int64)
    p50, p99, p999 = np.percentile(s, [50, 99, 99.9])
    edges = 2 ** np.arange(0, 41)            # 1 ns .. ~1100 s, buckets [2^k, 2^k+1)
    counts, _ = np.histogram(np.clip(s, 1, None), bins=edges)
    first, last = np.flatnonzero(counts)[[0, -1]]
    info = {"path": path, "impl": impl, "n": int(len(s)), "p50_ns": int(round(p50)),
            "p99_ns": int(round(p99)), "p999_ns": int(round(p999)), "max_ns": int(s.max()),
            "mean_ns": int(round(s.mean())),
            "hist_log2": {"first_exp": int(first), "counts": [int(c) for c in counts[first:last + 1]]}}
    info.update(extra)
    return info


def rate_info(path, impl, n, seconds, **extra):
    info = {"path": path, "impl": impl, "n": int(n), "per_s": float(n / seconds),
            "seconds": float(seconds)}
    info.update(extra)
    return info


class Peers:
    """Peer processes (multiprocessing spawn), killed at teardown whatever happened."""

    def __init__(self):
        self.ctx = mp.get_context("spawn")
        self.procs = []

    def start(self, target, *args):
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def event(self):
        return self.ctx.Event()

    def stop(self):
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
