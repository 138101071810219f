"""Prometheus metrics and JSON access logs with a request id."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

access_log = logging.getLogger("mathtune.access")


class Metrics:
    """One registry per app, so several apps (tests) never clash."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # the process itself (CPU seconds, resident memory, open files, threads, start time) and the Python
        # runtime, on the app's own registry: what an operator looks at first when a pod misbehaves
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        threads = Gauge("mathtune_process_threads", "OS threads of the server process (torch, llama.cpp and the "
                        "server's own)", registry=self.registry)
        threads.set_function(lambda: psutil.Process().num_threads())
        self.memory_limit = Gauge("mathtune_memory_limit_bytes", "The container's memory limit (cgroup), if any: "
                                  "alert on process_resident_memory_bytes near it", registry=self.registry)
        limit = memory_limit_bytes()
        if limit:
            self.memory_limit.set(limit)
        self.tutor_line = Gauge("mathtune_tutor_line", "Tutor requests being answered or waiting for a turn",
                                registry=self.registry)
        self.tutor_line_limit = Gauge("mathtune_tutor_line_limit", "The most tutor requests answered or waiting "
                                      "before the next gets 503", registry=self.registry)
        self.requests = Counter("mathtune_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("mathtune_request_latency_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.in_flight = Gauge("mathtune_requests_in_flight", "Requests being served", registry=self.registry)
        self.model_load = Gauge("mathtune_model_load_seconds", "Model load time", ["model"], registry=self.registry)
        self.model_ready = Gauge("mathtune_model_ready", "1 when the model answered its warm-up request", ["model"],
                                 registry=self.registry)
        self.predictions = Counter("mathtune_predictions_total", "Predicted classes (top-1)", ["model", "label"],
                                   registry=self.registry)
        self.confidence = Histogram("mathtune_prediction_confidence", "Top-1 probability", ["model"], registry=self.registry,
                                    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
        self.tutor_answers = Counter("mathtune_tutor_answers_total", "Tutor answers (/v1/tutor, not streamed token by "
                                     "token) by how they were had: none (made for the request), cache, joined "
                                     "(another request was making it)", ["reuse"], registry=self.registry)

        self.drift = Gauge("mathtune_drift", "Drift of a served signal against the training reference",
                           ["model", "signal", "measure"], registry=self.registry)
        self.retrain = Gauge("mathtune_retrain_suggested", "1 when enough recent inputs drifted", ["model"], registry=self.registry)
        self.drift_window = Gauge("mathtune_drift_window_size", "Inputs in the drift window", ["model"], registry=self.registry)

    def watch_tutor_line(self, gate) -> None:
        """The tutor's admission line, read when /metrics is scraped."""
        self.tutor_line.set_function(lambda: gate.active)
        self.tutor_line_limit.set(gate.limit)

    def update_drift(self, model: str, report: dict) -> None:
        if not report.get("available"):
            return
        self.drift_window.labels(model=model).set(report["window_size"])
        self.retrain.labels(model=model).set(1 if report["retrain_suggested"] else 0)
        for signal, entry in report["signals"].items():
            for measure in ("psi", "ks", "js"):
                if measure in entry:
                    self.drift.labels(model=model, signal=signal, measure=measure).set(entry[measure])

    def observe_predictions(self, model: str, labels: list[str], confidences: list[float]) -> None:
        for label, confidence in zip(labels, confidences):
            self.predictions.labels(model=model, label=label).inc()
            self.confidence.labels(model=model).observe(float(confidence))


def memory_limit_bytes() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None if none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path, encoding="ascii").read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for "no limit"
            return int(text)
    return None


class MonitoringMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next):
        request_id = request.headers.get("x-request-id", "")
        if not _REQUEST_ID.fullmatch(request_id):  # a client's id is echoed and logged: only short, plain ones
            request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        route = request.url.path
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-request-id"] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_flight.dec()
            route_label = route_template(request.scope)
            method = request.method if request.method in _METHODS else "other"
            self.metrics.requests.labels(route=route_label, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route_label).observe(elapsed)
            access_log.info(json.dumps({"request_id": request_id, "method": request.method, "path": route,
                                        "status": status, "ms": round(1000 * elapsed, 2)}))


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


def route_template(scope) -> str:
    """The matched route's template (``/v1/mathtune/models/{name}/plots/{file}``), never the raw path, so label values come
    from the app's route table only; requests that matched no route count as "other"."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return path if isinstance(path, str) else "other"
