"""Prometheus metrics of one gateway (own registry, so several gateways can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_COALESCED_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "tensorgate_gateway_requests_total",
            "Requests answered, by front, method, servable and status",
            ["protocol", "method", "servable", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tensorgate_gateway_request_seconds",
            "Time to answer a request",
            ["protocol", "method", "servable"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.coalesced = Histogram(
            "tensorgate_gateway_coalesced_requests",
            "Requests answered by one upstream Predict call (1: sent alone; more: merged by the coalescer)",
            ["servable"],
            buckets=_COALESCED_BUCKETS,
            registry=registry,
        )
        self.upstream_calls = Counter(
            "tensorgate_gateway_upstream_calls_total",
            "Calls to upstream targets, by gRPC code",
            ["upstream", "target", "method", "code"],
            registry=registry,
        )
        self.upstream_in_flight = Gauge(
            "tensorgate_gateway_upstream_in_flight",
            "Calls in flight per upstream",
            ["upstream"],
            registry=registry,
        )
        self.upstream_rejected = Counter(
            "tensorgate_gateway_upstream_rejected_total",
            "Calls refused with 429 because the upstream's queue was full",
            ["upstream"],
            registry=registry,
        )
        self.retries = Counter(
            "tensorgate_gateway_upstream_retries_total",
            "Retries after UNAVAILABLE or a CANCELLED from the server",
            ["upstream"],
            registry=registry,
        )
        self.ejections = Counter(
            "tensorgate_gateway_upstream_ejections_total",
            "Targets ejected after failing repeatedly",
            ["upstream", "target"],
            registry=registry,
        )
        self.target_healthy = Gauge(
            "tensorgate_gateway_upstream_target_healthy",
            "1 while a target takes traffic, 0 while ejected",
            ["upstream", "target"],
            registry=registry,
        )
        self.upstream_targets = Gauge(
            "tensorgate_gateway_upstream_targets",
            "Targets of an upstream: its host:port targets plus the addresses its dns: targets resolve to",
            ["upstream"],
            registry=registry,
        )
        self.resolutions = Counter(
            "tensorgate_gateway_upstream_resolutions",
            "Resolutions of an upstream's dns: targets, by result (ok, error)",
            ["upstream", "result"],
            registry=registry,
        )
        self.servable_available = Gauge(
            "tensorgate_gateway_servable_available",
            "1 when the servable has an AVAILABLE version upstream",
            ["servable"],
            registry=registry,
        )
        self.route_choices = Counter(
            "tensorgate_gateway_route_choices_total",
            "Servable chosen by a weighted route",
            ["route", "servable"],
            registry=registry,
        )
        self.shadow_compared = Counter(
            "tensorgate_gateway_shadow_rows_total",
            "Rows mirrored to a shadow candidate and compared with the primary",
            ["route", "candidate"],
            registry=registry,
        )
        self.shadow_agreed = Counter(
            "tensorgate_gateway_shadow_agreements_total",
            "Mirrored rows where the candidate's top-1 class equals the primary's",
            ["route", "candidate"],
            registry=registry,
        )
        self.shadow_failed = Counter(
            "tensorgate_gateway_shadow_failures_total",
            "Mirrored requests that failed, were dropped or timed out",
            ["route", "candidate"],
            registry=registry,
        )
        self.ensemble_answers = Counter(
            "tensorgate_gateway_ensemble_answers_total",
            "Ensemble answers, degraded when some member did not reply",
            ["ensemble", "degraded"],
            registry=registry,
        )
        self.ensemble_member_failures = Counter(
            "tensorgate_gateway_ensemble_member_failures_total",
            "Members that failed or timed out",
            ["ensemble", "member"],
            registry=registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
