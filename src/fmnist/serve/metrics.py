"""Prometheus metrics of one server (prometheus-client), exposed at GET /metrics in the text format.

With several worker processes (`fmnist serve --workers N`), PROMETHEUS_MULTIPROC_DIR names a
directory shared by the workers: each writes its values there and whichever worker answers
/metrics adds them all up (prometheus-client's multi-process mode), so one scrape sees the whole
server. Without it, each app keeps its own registry (several apps in one process do not mix).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported for the route)
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

STAGES = ("body", "decode", "batch_wait", "model", "encode")
REJECTED = (401, 413, 415, 429, 503)  # refusals an operator watches: keys, size, type, rate, overload
# Seconds: from 0.1 ms (a 28x28 PNG decodes in tens of µs) to 10 s (a 10 MiB upload on a slow link).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
disable_created_metrics()  # no *_created series: they double the exposition and no dashboard here uses them


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class Metrics:
    def __init__(self) -> None:
        # Multi-process mode: values go to files, not to a registry; exposition reads them all back.
        registry = None if multiprocess_mode() else CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "fmnist_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fmnist_request_seconds",
            "Time from the request's start to its answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage = Histogram(
            "fmnist_stage_seconds",
            "Time of each stage of POST /predict: body (reading it), "
            "decode (to 28x28), batch_wait (queued for the model), model (one call, per batch), "
            "encode (building the answer)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch = Histogram(
            "fmnist_batch_images", "Images in each model call", buckets=BATCH_BUCKETS, registry=registry
        )
        self.queued = Gauge(
            "fmnist_queued_images", "Images waiting for the model", multiprocess_mode="livesum", registry=registry
        )
        self.in_progress = Gauge(
            "fmnist_requests_in_progress",
            "POST /predict requests admitted and not answered",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rejected = Counter(
            "fmnist_rejected",
            "Requests refused, by status: 401 key, 413 size, 415 type, 429 rate limit, 503 overload",
            ["status"],
            registry=registry,
        )
        self.reloads = Counter(
            "fmnist_model_reloads", "Model reloads, by result (ok, failed)", ["result"], registry=registry
        )
        # Every series exists from the start, so a scrape shows zeros, not gaps; each labelled child is looked
        # up once and kept (prometheus-client's `labels` costs more than the observation it leads to).
        self.stages = {stage: self.stage.labels(stage) for stage in STAGES}
        for status in REJECTED:
            self.rejected.labels(str(status))
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # bounded: routes are a fixed set

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        if (children := self._answered.get(key)) is None:
            children = self._answered[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)
        if status in REJECTED:
            self.rejected.labels(str(status)).inc()

    def model_call(self, images: int, seconds: float) -> None:
        self.batch.observe(images)
        self.stages["model"].observe(seconds)

    def close(self) -> None:
        """At a worker's exit: drop its live gauges (queue, in progress) from the shared directory."""
        if self.registry is None:
            multiprocess.mark_process_dead(os.getpid())

    def exposition(self) -> bytes:
        """The text format of every metric (of every worker, in multi-process mode)."""
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
