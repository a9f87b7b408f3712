"""Prometheus metrics of eegfm-serve (``GET /metrics``) and the access log.

With ``--workers`` > 1 every worker writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (a private
temporary folder the server makes) and ``/metrics``, whichever worker answers it, sums them.

The access log line and the ``route`` label name the template of the app's route the request
matches (``routes.matched_route``), never the request's own path or query: a file name in either
may name a patient. Every label comes from a fixed set (a route template of the app, a standard
method, a status the server answers, else ``other`` or the status's class),
so a client sending a thousand made-up methods or paths adds no series and no long log line.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from eegfm.core.logs import get_logger
from eegfm.serving.api.routes import is_probe, label, matched

log = get_logger(__name__)
# RFC 9110's methods; anything else a client sends (h11 takes any token) is counted as "other"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
# The statuses eegfm-serve answers; another (206 and 304 from /static, say) is counted by its class
STATUSES = (200, 400, 401, 404, 405, 408, 411, 413, 415, 422, 500, 503)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Every metric's name as /metrics exposes it (counters gain _total, histograms _bucket/_sum/_count)
METRIC_NAMES = (
    "eegfm_requests_total",
    "eegfm_request_duration_seconds",
    "eegfm_requests_in_flight",
    "eegfm_recordings_total",
    "eegfm_windows_scored_total",
    "eegfm_eeg_seconds_scored_total",
    "eegfm_model_info",
)


def multiprocess_mode() -> bool:
    """Whether samples go to PROMETHEUS_MULTIPROC_DIR (the server sets it for --workers > 1)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The server's metrics, in a registry of their own (or the multi-process directory)."""

    def __init__(self) -> None:
        self.shared = multiprocess_mode()
        # in multi-process mode samples live in files; /metrics collects them into a fresh registry
        self.registry = None if self.shared else CollectorRegistry()
        kw = {"registry": self.registry}
        self.requests = Counter(
            "eegfm_requests",
            "HTTP requests answered, by route, method and status (each from a fixed set)",
            ["route", "method", "status"],
            **kw,
        )
        self.latency = Histogram(
            "eegfm_request_duration_seconds",
            "seconds from a request's arrival to its reply, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            **kw,
        )
        self.in_flight = Gauge(
            "eegfm_requests_in_flight", "requests being answered now", ["route"], multiprocess_mode="livesum", **kw
        )
        self.recordings = Counter(
            "eegfm_recordings", "recordings answered, by status (processed or quarantined)", ["status"], **kw
        )
        self.windows = Counter("eegfm_windows_scored", "windows scored by the model", **kw)
        self.eeg_seconds = Counter("eegfm_eeg_seconds_scored", "seconds of EEG in the recordings scored", **kw)
        self.model_info = Gauge(
            "eegfm_model_info",
            "1 for the model served: its version, backend and head",
            ["model_version", "backend", "head"],
            multiprocess_mode="max",
            **kw,
        )

    def set_model(self, description: dict) -> None:
        self.model_info.labels(description["model_version"], description["backend"], description["head"]).set(1)

    def count_recordings(self, recordings) -> None:
        """Windows, EEG seconds and statuses of the answered recordings (RecordingPrediction)."""
        for recording in recordings:
            self.recordings.labels(recording.status).inc()
            if recording.status == "processed":
                self.windows.inc(len(recording.windows))
                self.eeg_seconds.inc(recording.eeg_seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text /metrics answers, and its content type."""
        if self.shared:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def worker_stopped(self) -> None:
        """Drop this process's live gauges (in-flight requests) from the shared samples."""
        if self.shared:
            multiprocess.mark_process_dead(os.getpid())


def method_of(method: str) -> str:
    """The method label: a standard method, or 'other' (a made-up method of 8 KB is no series)."""
    return method if method in METHODS else "other"


def status_of(status: int) -> str:
    """The status label: one the server answers, else its class ('2xx' ... '5xx'), else 'other'."""
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class MetricsMiddleware:
    """ASGI middleware: counts, times and logs every HTTP request by route and status, with the
    client's address and the fingerprint of the API key it used (audit: who asked for what)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = matched(scope)
        route, method, probe = label(found), method_of(scope["method"]), is_probe(found)
        started = time.perf_counter()
        reply = {"status": 500, "bytes": 0}

        async def counted_send(message) -> None:
            if message["type"] == "http.response.start":
                reply["status"] = message["status"]
            elif message["type"] == "http.response.body":
                reply["bytes"] += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.labels(route).inc()
        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.metrics.in_flight.labels(route).dec()
            self.metrics.requests.labels(route, method, status_of(reply["status"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            if not probe:  # scraped and probed every few seconds: counted, not logged
                client = (scope.get("client") or ("-",))[0]
                key = scope.get("state", {}).get("api_key", "-")  # auth.require_key's fingerprint
                log.info("%s %s %d %d bytes client=%s %s", method, route, reply["status"], reply["bytes"], client, key)
