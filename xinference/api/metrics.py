"""GET /metrics: Prometheus' text format, one registry per app.

Request counters and histograms are fed by the request observer hook (observe.py) as
each inference request ends. Everything else (models, slots, queues, workers, replica
deaths) is read from the cluster when scraped, each source under a time bound: a slow
or vanished replica or supervisor leaves its series out of that scrape instead of
failing or stalling it.
"""

import asyncio
import logging
from typing import Any, Dict, Iterable, List, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..core.remote import CONNECTION_ERRORS, bounded
from ..core.supervisor_api import SupervisorAPI
from ..errors import XinferenceError
from .observe import FinishedRequest
from .replicas import ReplicaBalancer

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# the whole scrape's budget for asking the cluster; replicas get ReplicaBalancer's own, shorter one
SCRAPE_TIMEOUT_S = 3.0
# the `model` label of a request that failed before it reached a model (unknown model,
# invalid body): the name it asked for would let any client mint new series
UNROUTED = "unknown"
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
E2E_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    def __init__(self, supervisor: SupervisorAPI, replicas: ReplicaBalancer):
        self.registry = CollectorRegistry()
        self._cluster = _ClusterCollector(supervisor, replicas)
        self.registry.register(self._cluster)
        by_model = ("model", "endpoint")
        r = self.registry
        self._requests = Counter(
            "xinference_requests", "Inference requests that ended, by HTTP status (499: the client "
            "left; a stream that failed after its headers counts with its error's status).",
            ("model", "endpoint", "status"), registry=r)
        self._ttft = Histogram(
            "xinference_time_to_first_token_seconds", "Seconds from a request's arrival to its first "
            "generated token: when it was sent for a stream, when the replica made it for a "
            "whole answer.",
            by_model, buckets=TTFT_BUCKETS, registry=r)
        self._e2e = Histogram(
            "xinference_request_duration_seconds", "Seconds from a request's arrival to the end of "
            "its response, streams included.", by_model, buckets=E2E_BUCKETS, registry=r)
        self._prompt = Counter(
            "xinference_prompt_tokens", "Prompt tokens of requests that ended with usage reported.",
            by_model, registry=r)
        self._completion = Counter(
            "xinference_completion_tokens", "Generated tokens of requests that ended with usage "
            "reported (an aborted or cut-off stream reports none).", by_model, registry=r)
        self._cached = Counter(
            "xinference_cached_prompt_tokens", "Prompt tokens whose KV state a replica reused "
            "from its prefix cache.", by_model, registry=r)

    def observe(self, done: FinishedRequest) -> None:
        """The request observer: bookkeeping only (prometheus_client's own locks)."""
        labels = (done.model or UNROUTED, done.endpoint)
        self._requests.labels(*labels, str(done.status)).inc()
        self._e2e.labels(*labels).observe(done.e2e_s)
        if done.ttft_s is not None:
            self._ttft.labels(*labels).observe(done.ttft_s)
        if done.prompt_tokens:
            self._prompt.labels(*labels).inc(done.prompt_tokens)
        if done.completion_tokens:
            self._completion.labels(*labels).inc(done.completion_tokens)
        if done.cached_tokens:
            self._cached.labels(*labels).inc(done.cached_tokens)

    async def render(self) -> bytes:
        # the snapshot and the text come from one scrape: nothing awaits in between
        self._cluster.snapshot = await self._cluster.read()
        return generate_latest(self.registry)


class _Snapshot:
    def __init__(self) -> None:
        self.models: Dict[str, Dict[str, Any]] = {}
        self.loads: Dict[str, List[Dict[str, Any]]] = {}
        self.workers: List[Dict[str, Any]] = []
        self.deaths: Dict[str, int] = {}


async def _bounded(call: Any, default: Any, what: str) -> Any:
    try:
        return await bounded(call, SCRAPE_TIMEOUT_S)
    except (asyncio.TimeoutError, XinferenceError, *CONNECTION_ERRORS) as e:
        logger.debug("metrics: %s left out: %s", what, e)
    except Exception:  # a scrape reports what it can rather than fail
        logger.warning("metrics: reading %s failed", what, exc_info=True)
    return default


class _ClusterCollector:
    """Series read from the cluster at scrape time (gauges, and the supervisor's counter
    of replica deaths)."""

    def __init__(self, supervisor: SupervisorAPI, replicas: ReplicaBalancer):
        self._supervisor = supervisor
        self._replicas = replicas
        self.snapshot = _Snapshot()

    async def read(self) -> _Snapshot:
        snap = _Snapshot()
        sup = self._supervisor
        models: Dict[str, Dict[str, Any]]
        models, snap.workers, snap.deaths = await asyncio.gather(
            _bounded(sup.list_models(), {}, "models"),
            _bounded(sup.list_workers(), [], "workers"),
            _bounded(sup.replica_deaths(), {}, "replica deaths"))
        # a LoRA adapter is listed as a model too, but runs on its parent's replicas
        snap.models = {uid: d for uid, d in models.items() if not d.get("parent")}
        ready = [uid for uid, d in snap.models.items() if d.get("status") == "READY"]
        loads = await asyncio.gather(*(_bounded(self._replicas.stats(uid), [], f"load of {uid}")
                                       for uid in ready))
        snap.loads = dict(zip(ready, loads))
        return snap

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        yield from _model_series(snap)
        deaths = CounterMetricFamily(
            "xinference_replica_deaths", "Replica processes of a model that ended unexpectedly "
            "(crashed or killed), as the supervisor counted them since it started.", labels=["model"])
        for uid, n in sorted(snap.deaths.items()):
            deaths.add_metric([uid], n)
        yield deaths
        yield from _worker_series(snap.workers)


def _gauge(name: str, doc: str, labels: Tuple[str, ...]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _model_series(snap: _Snapshot) -> Iterable[Metric]:
    info = _gauge("xinference_model_info", "1 for each running model; its name, type and engine "
                  "(join on `model` for the other series).", ("model", "model_name", "model_type", "engine"))
    replicas = _gauge("xinference_model_replicas", "Replicas of a model, and how many are ready.",
                      ("model", "model_name", "state"))
    running = _gauge("xinference_running_requests", "Requests this REST server has sent to a "
                     "model's replicas and not yet seen end (queued ones included).",
                     ("model", "model_name"))
    queued = _gauge("xinference_queued_requests", "Requests waiting in the replicas' queues for a "
                    "slot or a batch (replicas that answered within the scrape's time bound).",
                    ("model", "model_name"))
    busy = _gauge("xinference_slots_busy", "Decoding slots in use, summed over the replicas that "
                  "answered.", ("model", "model_name"))
    total = _gauge("xinference_slots_total", "Decoding slots, summed over the replicas that answered.",
                   ("model", "model_name"))
    for uid, desc in sorted(snap.models.items()):
        name = str(desc.get("model_name") or "")
        info.add_metric([uid, name, str(desc.get("model_type") or ""), str(desc.get("model_engine") or "")], 1)
        rows = desc.get("replicas") or []
        replicas.add_metric([uid, name, "total"], len(rows))
        replicas.add_metric([uid, name, "ready"], sum(1 for r in rows if r.get("ready")))
        load = snap.loads.get(uid)
        if load is None:
            continue
        running.add_metric([uid, name], sum(int(r.get("inflight", 0)) for r in load))
        for family, key in ((queued, "queue_length"), (busy, "slots_busy"), (total, "slots_total")):
            answered = [int(r[key]) for r in load if key in r]
            if answered:
                family.add_metric([uid, name], sum(answered))
    return [info, replicas, running, queued, busy, total]


def _worker_series(workers: List[Dict[str, Any]]) -> Iterable[Metric]:
    labels = ("worker",)
    gpu_labels = ("worker", "gpu", "gpu_name")
    cpu_usage = _gauge("xinference_worker_cpu_usage_ratio", "A worker machine's CPU use, 0-1, "
                       "as of its last heartbeat.", labels)
    cpu_count = _gauge("xinference_worker_cpu_count", "Logical CPUs of a worker machine.", labels)
    mem_total = _gauge("xinference_worker_memory_total_bytes", "A worker machine's memory.", labels)
    mem_avail = _gauge("xinference_worker_memory_available_bytes", "A worker machine's memory "
                       "available, as of its last heartbeat.", labels)
    heartbeat = _gauge("xinference_worker_heartbeat_age_seconds", "Seconds since the supervisor "
                       "last heard from a worker.", labels)
    gpu_util = _gauge("xinference_worker_gpu_utilization_ratio", "A GPU's utilization, 0-1, as "
                      "NVML reported it at the worker's last heartbeat.", gpu_labels)
    gpu_used = _gauge("xinference_worker_gpu_memory_used_bytes", "A GPU's memory in use.", gpu_labels)
    gpu_total = _gauge("xinference_worker_gpu_memory_total_bytes", "A GPU's memory.", gpu_labels)
    gpu_reserved = _gauge("xinference_worker_gpu_reserved", "1 if a replica holds this GPU.", gpu_labels)
    for w in sorted(workers, key=lambda w: str(w.get("worker_address"))):
        addr = str(w.get("worker_address"))
        status = w.get("status") or {}
        for family, key in ((cpu_usage, "cpu_usage"), (cpu_count, "cpu_count"),
                            (mem_total, "memory_total"), (mem_avail, "memory_available")):
            if key in status:
                family.add_metric([addr], float(status[key]))
        if "seconds_since_heartbeat" in w:
            heartbeat.add_metric([addr], float(w["seconds_since_heartbeat"]))
        reserved = set(status.get("reserved_gpus") or [])
        for gpu in status.get("gpus") or []:
            g = [addr, str(gpu.get("index")), str(gpu.get("name") or "")]
            for family, key in ((gpu_util, "utilization"), (gpu_used, "memory_used"),
                                (gpu_total, "memory_total")):
                if key in gpu:
                    family.add_metric(g, float(gpu[key]))
            gpu_reserved.add_metric(g, 1 if gpu.get("index") in reserved else 0)
    return [cpu_usage, cpu_count, mem_total, mem_avail, heartbeat, gpu_util, gpu_used, gpu_total, gpu_reserved]

