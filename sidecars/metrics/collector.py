"""What `ttquant metrics` exports, read fresh from /dev/shm at each scrape.

Two sources, both discovered without configuration:
- every ring (core/rings/inspect.py): write position, capacity, epoch, writer liveness and
  heartbeat age, full refusals, and for single-reader rings what is unread;
- every telemetry segment (core/telemetry): each series under `ttq_<role>_<name>`, with the
  venue, role and process labels (and the process's own, e.g. strategy), the group's and the
  name's; histograms as Prometheus histograms in seconds; `ttq_up` and the heartbeat age of
  each process.

Nothing here writes to a segment or takes a role: it maps read-only and copies.
"""
from __future__ import annotations

import logging
import time

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ttquant.core.rings.inspect import ring_infos
from ttquant.core.telemetry.telemetry import HIST_BUCKETS, HIST_SUB_BITS, read_telemetry

__all__ = ["ShmCollector", "exported_bounds"]

log = logging.getLogger("ttquant.metrics")
NS = 1e-9


def exported_bounds() -> list[tuple[int, int]]:
    """(bucket index, its exclusive upper bound in the histogram's unit) of the buckets exported
    as `le`: every power of two and 1.5 times one from 64 up; cumulative counts at these bounds
    are exact, the finer buckets between them are summed in."""
    out = []
    for b in range(8, HIST_BUCKETS - 1):
        e, sub = 3 + ((b - 8) >> HIST_SUB_BITS), (b - 8) & 3
        bound = (4 + sub + 1) << (e - HIST_SUB_BITS)
        if sub in (1, 3) and bound >= 64:
            out.append((b, bound))
    return out


_BOUNDS = exported_bounds()

_RING_GAUGES = {
    "write_position": "Records published into the ring since it was made",
    "capacity": "Slots in the ring",
    "epoch": "Writer epoch: bumped each time a writer attaches (a restart)",
    "heartbeat_age_seconds": "Seconds since the ring's writer last beat",
    "writer_up": "1 while the process holding the ring's writer role is alive",
    "unread_records": "Records written and not yet read (single-reader rings)",
    "reader_up": "1 while the reader of a single-reader ring is alive",
}


def _ring_labels(name: str) -> dict:
    parts = name.lstrip("/").split(".")         # ttq.<venue>.<kind>[.<owner>]
    return {"venue": parts[1] if len(parts) > 1 else "", "ring": ".".join(parts[2:])}


class ShmCollector(Collector):
    """A prometheus_client collector over /dev/shm (register it in a CollectorRegistry)."""

    def __init__(self):
        self.last_errors: list[str] = []

    def collect(self):
        t0 = time.perf_counter()
        errors = []
        families: dict[str, Metric] = {}

        def family(name, doc, kind):
            m = families.get(name)
            if m is None:
                m = families[name] = Metric(name, doc, kind)
            return m

        infos = ring_infos()
        segments = 0
        for info in infos:
            name = info["name"]
            if "error" in info:
                errors.append(f"{name}: {info['error']}")
                continue
            if info["record"] == "telemetry":
                segments += 1
                try:
                    self._telemetry(name, family)
                except Exception as exc:        # a segment gone mid-read, a newer layout: skip it, say so
                    errors.append(f"{name}: {exc}")
                continue
            self._ring(info, family)
        self.last_errors = errors
        for msg in errors:
            log.debug("not exported: %s", msg)
        own = {"ttq_metrics_rings": ("Rings read in this scrape", len(infos) - segments - len(errors)),
               "ttq_metrics_telemetry_segments": ("Telemetry segments read in this scrape", segments),
               "ttq_metrics_unreadable_segments": ("Segments in /dev/shm this scrape could not read", len(errors)),
               "ttq_metrics_scrape_seconds": ("Time this scrape took to read /dev/shm", time.perf_counter() - t0)}
        for n, (doc, v) in own.items():
            family(n, doc, "gauge").add_sample(n, {}, v)
        yield from families.values()

    @staticmethod
    def _ring(info, family):
        labels = {**_ring_labels(info["name"]), "kind": info["kind"], "record": info["record"]}
        values = {"write_position": info["write_position"], "capacity": info["capacity"], "epoch": info["epoch"],
                  "writer_up": 1 if info["writer_alive"] else 0}
        if info["heartbeat_age_ns"] is not None:
            values["heartbeat_age_seconds"] = info["heartbeat_age_ns"] * NS
        if "unread" in info:
            values["unread_records"] = info["unread"]
            values["reader_up"] = 1 if info["reader_alive"] else 0
        for key, v in values.items():
            n = f"ttq_ring_{key}"
            family(n, _RING_GAUGES[key], "gauge").add_sample(n, labels, v)
        n = "ttq_ring_rejected_full"
        family(n, "Records the ring's writer refused because a reader had not made room", "counter").add_sample(
            n + "_total", labels, info["rejected_full"])

    @staticmethod
    def _telemetry(name, family):
        seg = read_telemetry(name)
        own = dict(seg["labels"])
        role = own.pop("role", "") or "process"
        # venue: the stack's rings name, as the rings' own series have it (the venue in production)
        up = {"venue": seg["rings"], "role": role, "process": own.pop("process", "")}
        own.pop("venue", None)
        base = {**up, **own}            # and the process's own labels: strategy="mm"
        family("ttq_up", "1 while the process that owns a telemetry segment is alive", "gauge").add_sample(
            "ttq_up", up, 1 if seg["writer_alive"] else 0)
        if seg["heartbeat_age_ns"] is not None:
            family("ttq_telemetry_heartbeat_age_seconds", "Seconds since the process last beat in its telemetry "
                   "segment", "gauge").add_sample("ttq_telemetry_heartbeat_age_seconds", up,
                                                  seg["heartbeat_age_ns"] * NS)
        family("ttq_telemetry_epoch", "Runs of the process: its telemetry segment's writer epoch", "gauge").add_sample(
            "ttq_telemetry_epoch", up, seg["epoch"])
        for s in seg["series"]:
            metric = f"ttq_{role}_{s['name']}"
            labels = {**base, **s["labels"]}
            doc = f"ttquant {role}: {s['name']} (telemetry of /ttq.*.telemetry.*)"
            if s["kind"] == "counter":
                fam = metric[:-6] if metric.endswith("_total") else metric
                family(fam, doc, "counter").add_sample(fam + "_total", labels, s["value"])
            elif s["kind"] == "gauge":
                family(metric, doc, "gauge").add_sample(metric, labels, s["value"])
            else:
                unit = 10.0 ** s["scale"]
                m = family(metric, doc, "histogram")
                buckets, seen, i = s["buckets"], 0, 0
                for b, bound in _BOUNDS:
                    while i <= b:
                        seen += int(buckets[i])
                        i += 1
                    m.add_sample(metric + "_bucket", {**labels, "le": f"{bound * unit:.9g}"}, seen)
                # count is bumped before its bucket and copied first: the buckets may hold one more
                total = max(s["count"], int(buckets.sum()))
                m.add_sample(metric + "_bucket", {**labels, "le": "+Inf"}, total)
                m.add_sample(metric + "_sum", labels, s["sum"] * unit)
                m.add_sample(metric + "_count", labels, total)
