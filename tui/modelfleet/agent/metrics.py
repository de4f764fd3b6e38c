"""Prometheus metrics of one agent (own registry, prometheus-client), plus psutil and NVIDIA GPU collectors.

Metric names (all prefixed ``modelfleet_agent_``): ``requests_total{endpoint,code}``, ``errors_total{endpoint,
reason}``, ``request_duration_seconds{endpoint}`` (histogram), ``rows_total``, ``predictions_total{version,
class}``, ``predictions_by_group_total{version,group,class}``, ``model_info{model,version,digest}``,
``ready``, ``draining``, ``reloads_total{outcome}``, ``process_*`` and ``host_*`` (psutil) and, when an NVIDIA
GPU is present, ``gpu_memory_used_bytes{gpu}``, ``gpu_memory_total_bytes{gpu}``, ``gpu_utilization_ratio{gpu}``.
Label values of classes and groups are bounded (``MAX_LABELS``; the rest is ``other``).

The counters of the version being served (one epoch: they restart at zero on every reload or restart, which
Prometheus' ``increase()`` handles as a counter reset) come from :class:`ServedCollector`, read at scrape time
(nothing per request), every family labelled ``{model, version}``:

- ``counter_start_time_seconds`` (gauge): when these counters started;
- ``scored_requests_total``, ``scoring_errors_total``, ``scored_rows_total``;
- ``scoring_latency_seconds`` (histogram, bounds ``core.latency.LATENCY_BOUNDS``);
- ``drift_rows_total{feature, bin, label}``: live rows per reference bin (``bin`` is the bin's index in the
  profile, ``label`` its range or category, e.g. ``[0.12,0.5)``, ``car``, ``new``);
- ``drift_predictions_total{bin, label}`` and ``drift_group_predictions_total{group, bin, label}``: predictions
  per prediction bin, overall and per group bin of the profile's group column;
- ``profile_info{profile_sha256}`` (gauge 1): which reference profile the counts are on;
- ``latency_regression`` (gauge: 1 while the node's latency detector says ``regressed``) and
  ``latency_regression_alarms_total``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from modelfleet.core.latency import LATENCY_BOUNDS

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.agent.served import Served

PREFIX = "modelfleet_agent"
MAX_LABELS = 128
LATENCY_BUCKETS = LATENCY_BOUNDS


class ResourceCollector(Collector):
    """Process and host resources from psutil; GPU memory/utilisation via NVML or nvidia-smi when present."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._gpu_cache: tuple[float, list[tuple[str, float, float, float]]] = (0.0, [])
        self._gpu_lock = threading.Lock()
        self._smi = shutil.which("nvidia-smi")
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:
            self._nvml = None

    def _gpus(self) -> list[tuple[str, float, float, float]]:
        now = time.monotonic()
        with self._gpu_lock:
            if now - self._gpu_cache[0] < 5.0:
                return self._gpu_cache[1]
            out: list[tuple[str, float, float, float]] = []
            try:
                if self._nvml is not None:
                    nv = self._nvml
                    for i in range(nv.nvmlDeviceGetCount()):
                        h = nv.nvmlDeviceGetHandleByIndex(i)
                        mem = nv.nvmlDeviceGetMemoryInfo(h)
                        util = nv.nvmlDeviceGetUtilizationRates(h)
                        out.append((str(i), float(mem.used), float(mem.total), util.gpu / 100.0))
                elif self._smi:
                    res = subprocess.run(
                        [self._smi, "--query-gpu=index,memory.used,memory.total,utilization.gpu",
                         "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=2)
                    for line in res.stdout.splitlines():
                        idx, used, total, util = (x.strip() for x in line.split(","))
                        out.append((idx, float(used) * 2**20, float(total) * 2**20, float(util) / 100.0))
            except Exception:
                out = []
            self._gpu_cache = (now, out)
            return out

    def collect(self) -> Iterator[Any]:
        p = self._proc
        with p.oneshot():
            mem = p.memory_info()
            cpu = p.cpu_times()
            rss = GaugeMetricFamily(f"{PREFIX}_process_resident_memory_bytes", "Agent resident memory")
            rss.add_metric([], mem.rss)
            yield rss
            c = CounterMetricFamily(f"{PREFIX}_process_cpu_seconds", "Agent CPU time (user+system)")
            c.add_metric([], cpu.user + cpu.system)
            yield c
            t = GaugeMetricFamily(f"{PREFIX}_process_threads", "Agent threads")
            t.add_metric([], p.num_threads())
            yield t
            try:
                fds = GaugeMetricFamily(f"{PREFIX}_process_open_fds", "Agent open file descriptors")
                fds.add_metric([], p.num_fds())
                yield fds
            except (AttributeError, psutil.Error):
                pass
        vm = psutil.virtual_memory()
        g = GaugeMetricFamily(f"{PREFIX}_host_memory_bytes", "Host memory", labels=["state"])
        g.add_metric(["total"], vm.total)
        g.add_metric(["available"], vm.available)
        yield g
        cpu_pct = GaugeMetricFamily(f"{PREFIX}_host_cpu_ratio", "Host CPU utilisation since the last scrape")
        cpu_pct.add_metric([], psutil.cpu_percent(interval=None) / 100.0)
        yield cpu_pct
        try:
            load1, _, _ = psutil.getloadavg()
            la = GaugeMetricFamily(f"{PREFIX}_host_load1", "Host 1-minute load average")
            la.add_metric([], load1)
            yield la
        except (AttributeError, OSError):
            pass
        gpus = self._gpus()
        if gpus:
            used = GaugeMetricFamily(f"{PREFIX}_gpu_memory_used_bytes", "GPU memory used", labels=["gpu"])
            total = GaugeMetricFamily(f"{PREFIX}_gpu_memory_total_bytes", "GPU memory total", labels=["gpu"])
            util = GaugeMetricFamily(f"{PREFIX}_gpu_utilization_ratio", "GPU utilisation", labels=["gpu"])
            for idx, u, tot, ut in gpus:
                used.add_metric([idx], u)
                total.add_metric([idx], tot)
                util.add_metric([idx], ut)
            yield used
            yield total
            yield util


class ServedCollector(Collector):
    """The served version's counters as Prometheus families (see the module docstring), read at scrape time."""

    def __init__(self, active: Callable[[], Served | None]) -> None:
        self._active = active

    def collect(self) -> Iterator[Any]:
        s = self._active()
        if s is None:
            return
        r = s.release
        base = ["model", "version"]
        key = [r.name, r.version]
        with s.lock:
            requests, errors, rows = s.requests, s.errors, s.rows
            histogram = list(s.histogram)
            total = s.latency.sum
            counts = s.drift.snapshot() if s.drift is not None else None
        start = GaugeMetricFamily(f"{PREFIX}_counter_start_time_seconds",
                                  "Unix time the counters of the served version started (reload or restart)",
                                  labels=base)
        start.add_metric(key, s.window_start)
        yield start
        for name, doc, value in (("scored_requests", "Scoring requests answered", requests),
                                 ("scoring_errors", "Scoring requests refused (4xx/5xx)", errors),
                                 ("scored_rows", "Rows scored", rows)):
            fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=base)
            fam.add_metric(key, value, created=s.window_start)
            yield fam
        cumulative = []
        running = 0
        for bound, count in zip((*LATENCY_BOUNDS, float("inf")), histogram, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        hist = HistogramMetricFamily(f"{PREFIX}_scoring_latency_seconds", "Scoring latency of the served version",
                                     labels=base)
        hist.add_metric(key, cumulative, total)
        yield hist
        reg = GaugeMetricFamily(f"{PREFIX}_latency_regression", "1 while the latency detector says regressed",
                                labels=base)
        reg.add_metric(key, 1.0 if s.regression.state == "regressed" else 0.0)
        yield reg
        alarms = CounterMetricFamily(f"{PREFIX}_latency_regression_alarms", "Latency regressions detected",
                                     labels=base)
        alarms.add_metric(key, s.regression.alarms)
        yield alarms
        if counts is None:
            return
        info = GaugeMetricFamily(f"{PREFIX}_profile_info", "The reference profile the drift counts are on",
                                 labels=[*base, "profile_sha256"])
        info.add_metric([*key, s.profile_sha256 or ""], 1.0)
        yield info
        fam = CounterMetricFamily(f"{PREFIX}_drift_rows", "Live rows per reference bin",
                                  labels=[*base, "feature", "bin", "label"])
        for feature, data in counts["features"].items():
            for i, (label, value) in enumerate(zip(data["bins"], data["counts"], strict=True)):
                fam.add_metric([*key, feature, str(i), label], value)
        yield fam
        pred = counts.get("predictions")
        if pred is None:
            return
        fam = CounterMetricFamily(f"{PREFIX}_drift_predictions", "Predictions per prediction bin",
                                  labels=[*base, "bin", "label"])
        for i, (label, value) in enumerate(zip(pred["bins"], pred["counts"], strict=True)):
            fam.add_metric([*key, str(i), label], value)
        yield fam
        groups = (counts.get("predictions_by_group") or {}).get("groups") or {}
        fam = CounterMetricFamily(f"{PREFIX}_drift_group_predictions", "Predictions per group and prediction bin",
                                  labels=[*base, "group", "bin", "label"])
        for group, values in groups.items():
            for i, (label, value) in enumerate(zip(pred["bins"], values, strict=True)):
                fam.add_metric([*key, group, str(i), label], value)
        yield fam


class BoundedLabels:
    """Maps raw label values to at most ``limit`` distinct strings (then ``other``)."""

    def __init__(self, limit: int = MAX_LABELS) -> None:
        self.limit = limit
        self._seen: dict[Any, str] = {}
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        got = self._seen.get(value)
        if got is not None:
            return got
        with self._lock:
            if len(self._seen) >= self.limit:
                return "other"
            label = str(value)[:64]
            self._seen[value] = label
            return label


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests", ["endpoint", "code"], registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Failed requests by reason", ["endpoint", "reason"], registry=r)
        self.latency = Histogram(f"{PREFIX}_request_duration_seconds", "Request latency",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter(f"{PREFIX}_rows", "Rows scored", registry=r)
        self.batches = Counter(f"{PREFIX}_batches", "predict() calls (requests are coalesced)", registry=r)
        self.predictions = Counter(f"{PREFIX}_predictions", "Predictions by class", ["version", "class"],
                                   registry=r)
        self.by_group = Counter(f"{PREFIX}_predictions_by_group", "Predictions by group and class",
                                ["version", "group", "class"], registry=r)
        self.info = Gauge(f"{PREFIX}_model_info", "The model version being served", ["model", "version", "digest"],
                          registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 when a model is loaded and the agent is not draining", registry=r)
        self.draining = Gauge(f"{PREFIX}_draining", "1 while draining", registry=r)
        self.reloads = Counter(f"{PREFIX}_reloads", "Reload attempts by outcome", ["outcome"], registry=r)
        self.start_time = Gauge(f"{PREFIX}_start_time_seconds", "Unix time the agent started", registry=r)
        self.start_time.set(time.time())
        r.register(ResourceCollector())
        self.class_label = BoundedLabels()
        self.group_label = BoundedLabels(64)
        self._req_children: dict[tuple[str, int], Any] = {}
        self._lat_children: dict[str, Any] = {}

    def observe_request(self, endpoint: str, code: int, seconds: float | None = None) -> None:
        child = self._req_children.get((endpoint, code))
        if child is None:
            child = self._req_children[(endpoint, code)] = self.requests.labels(endpoint, str(code))
        child.inc()
        if seconds is not None:
            lat = self._lat_children.get(endpoint)
            if lat is None:
                lat = self._lat_children[endpoint] = self.latency.labels(endpoint)
            lat.observe(seconds)

    def set_model(self, name: str, version: str, digest: str | None) -> None:
        self.info.clear()
        self.info.labels(name, version, digest or "").set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
