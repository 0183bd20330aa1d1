"""serving.tracing without a collector: off by default (OpenTelemetry not even imported), the hooks'
null behaviour, and the Server-Timing value."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from serving import tracing


def test_an_app_without_tracing_config_never_loads_otlp() -> None:
    # (FastAPI imports the OpenTelemetry API by itself; the OTLP protos are ours to load)
    code = (
        "import sys\n"
        "from serving.gateway.config import load_settings\n"
        "from serving.gateway.main import create_app\n"
        "create_app(load_settings(repo=None, servables={'cnn': 'default'}))\n"
        "ours = ('opentelemetry.sdk', 'opentelemetry.exporter', 'opentelemetry.proto')\n"
        "print(sorted(m for m in sys.modules if m.startswith(ours)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hooks_are_null_when_off() -> None:
    assert not tracing.enabled()
    with (
        tracing.span("x") as current,
        tracing.server_span("y", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}),
    ):
        assert current is None
        assert tracing.trace_id() is None
        assert tracing.capture() is None
    metadata = (("x-request-id", "r"),)
    assert tracing.outgoing(metadata) is metadata
    tracing.Interval("queue").end()


def test_server_timing_reports_the_total_and_the_trace() -> None:
    started = time.perf_counter() - 0.0123
    value = tracing.server_timing(started).decode()
    assert value.startswith("total;dur=") and 12.2 < float(value.split("=")[1]) < 200
    traced = tracing.server_timing(started, "ab" * 16).decode()
    assert traced.endswith(f', trace;desc="{"ab" * 16}"')


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        tracing.configure("127.0.0.1:4317", ratio)
    assert not tracing.enabled()


def test_the_callers_flag_decides_and_unsampled_requests_say_so_downstream() -> None:
    from loadtest.otlp_receiver import Receiver

    receiver = Receiver().start()
    try:
        assert tracing.configure(receiver.endpoint, 0.0, "unit")
        trace_id, parent = "a" * 32, "b" * 16
        with tracing.server_span("sampled", {"traceparent": f"00-{trace_id}-{parent}-01"}) as current:
            assert current is not None and tracing.trace_id() == trace_id
            sent = dict(tracing.outgoing((("x-request-id", "r"),)))
            assert sent["traceparent"].startswith(f"00-{trace_id}-") and sent["traceparent"].endswith("-01")
        with tracing.server_span("unsampled", {"traceparent": f"00-{trace_id}-{parent}-00"}) as current:
            assert current is None and tracing.trace_id() is None
            assert dict(tracing.outgoing(()))["traceparent"] == f"00-{trace_id}-{parent}-00"
        carrier = {"traceparent": f"00-{trace_id}-{parent}-00", "tracestate": "v=3"}
        with tracing.server_span("unsampled", carrier):  # the caller's tracestate goes on with its traceparent
            assert dict(tracing.outgoing((("x-request-id", "r"),))) == {"x-request-id": "r", **carrier}
        for carrier in ({}, {"traceparent": "garbage"}):  # no valid parent: the ratio (0) decides
            with tracing.server_span("root", carrier) as current:
                assert current is None
                assert dict(tracing.outgoing(()))["traceparent"].endswith("-00")
        assert dict(tracing.outgoing(()))["traceparent"].endswith("-00")  # outside requests too
    finally:
        tracing.shutdown()
        receiver.stop()
    assert not tracing.enabled()
    names = {span.name for span in receiver.spans()}
    assert names <= {"sampled"}


def test_spans_reach_a_real_receiver_with_parents_links_events_and_types() -> None:
    from loadtest.otlp_receiver import Receiver

    receiver = Receiver().start()
    try:
        assert tracing.configure(receiver.endpoint, 1.0, "unit")
        trace_id, parent = "c" * 32, "d" * 16
        carrier = {"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "vendor=1"}
        with tracing.server_span("request", carrier, {"n": 3}) as root:
            root.set_attribute("ok", True)
            with tracing.span("child", {"ratio": 0.5}):
                tracing.event("attempt", {"attempt": 1, "code": "OK"})
                sent = dict(tracing.outgoing(()))
                other = tracing.capture()
            with pytest.raises(KeyError), tracing.span("failing"):
                raise KeyError("x")
            queued = tracing.Interval("queue")
        with tracing.server_span("second", {}):  # a new trace (ratio 1), linked from the batch
            second = tracing.capture()
        with tracing.span_from("batch", [None, other, second]):
            pass
        queued.end()
    finally:
        tracing.shutdown()  # sends what waits
        receiver.stop()
    spans = {span.name: span for span in receiver.spans()}
    assert set(spans) == {"request", "child", "failing", "queue", "second", "batch"}
    request, child = spans["request"], spans["child"]
    assert request.trace_id == trace_id and request.parent_id == parent and request.kind == 2  # SERVER
    assert request.attributes == {"n": 3, "ok": True} and request.service == "unit"
    assert child.parent_id == request.span_id and child.attributes == {"ratio": 0.5} and child.kind == 1
    assert child.events == (("attempt", {"attempt": 1, "code": "OK"}),)
    assert sent == {"traceparent": f"00-{trace_id}-{child.span_id}-01", "tracestate": "vendor=1"}
    assert spans["failing"].parent_id == request.span_id and spans["queue"].parent_id == request.span_id
    assert spans["second"].trace_id != trace_id and spans["second"].parent_id == ""
    batch = spans["batch"]
    assert batch.parent_id == child.span_id and batch.links == (spans["second"].trace_id,)
    assert all(span.start_ns <= span.end_ns for span in spans.values())


def test_spans_are_encoded_and_sent_by_a_child_process_that_ends_with_the_exporter() -> None:
    from loadtest.otlp_receiver import Receiver

    receiver = Receiver().start()
    try:
        assert tracing.configure(receiver.endpoint, 1.0, "unit")
        assert tracing._active is not None
        agent = tracing._active.exporter._agent
        assert agent is not None and agent.pid != os.getpid() and agent.poll() is None
        with tracing.server_span("request", {}, {"path": Path("/x"), "n": 2}):  # marshal knows no Path
            pass
    finally:
        tracing.shutdown()
        receiver.stop()
    assert agent.poll() == 0  # it sent what it was handed, then ended on EOF
    (span,) = receiver.spans()
    assert span.name == "request" and span.attributes == {"path": "/x", "n": 2}


def test_a_failed_span_has_an_error_status() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    from serving.tracing_wire import Encoder

    records = [
        (1, 2, 0, "ok", 2, 10, 20, {"a": "b"}, None, None, None),
        (1, 3, 2, "bad", 1, 11, 19, None, None, None, "E"),
    ]
    request = ExportTraceServiceRequest.FromString(Encoder("unit").encode(records))
    ok, bad = request.resource_spans[0].scope_spans[0].spans
    assert ok.status.code == Status.STATUS_CODE_UNSET and not ok.parent_span_id
    assert bad.status.code == Status.STATUS_CODE_ERROR and bad.status.message == "E"
    assert bad.parent_span_id == (2).to_bytes(8, "big") and bad.trace_id == (1).to_bytes(16, "big")


@pytest.mark.parametrize(
    "header",
    [
        "00-" + "0" * 32 + "-" + "2" * 16 + "-01",  # zero trace id
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",  # zero parent id
        "ff-" + "1" * 32 + "-" + "2" * 16 + "-01",  # version ff
        "00-" + "1" * 32 + "-" + "2" * 16 + "-01-extra",  # version 00 has four parts
        "00-" + "A" * 32 + "-" + "2" * 16 + "-01",  # upper case
        "00-" + "1" * 31 + "-" + "2" * 16 + "-01",
    ],
)
def test_an_invalid_traceparent_leaves_the_decision_to_the_ratio(header: str) -> None:
    assert tracing.configure("127.0.0.1:9", 0.0, "unit")  # nothing is exported: nothing is sampled
    try:
        with tracing.server_span("x", {"traceparent": header}) as current:
            assert current is None
            assert dict(tracing.outgoing(()))["traceparent"].split("-")[1] != header.split("-")[1]
    finally:
        tracing.shutdown()


def test_spans_beyond_the_queue_limit_are_dropped_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    from serving.tracing_export import Exporter

    exporter = Exporter("127.0.0.1:9", "unit")
    exporter.shutdown()  # its thread stops (nothing to send), so nothing drains the queue below
    for index in range(10):
        exporter.add((1, index + 1, 0, "s", 1, 0, 0, None, None, None, None))
    assert len(exporter.pending) == 4 and exporter.dropped == 6


def _http_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/x", "headers": [(b"host", b"h"), *headers]}


async def _seen_by_app(scope: dict[str, Any], app_calls: list[Any]) -> list[tuple[bytes, bytes]]:
    """Runs ``scope`` through HttpSpans around an app that notes what it would send upstream; returns
    the response headers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        app_calls.append((dict(tracing.outgoing(())), tracing.trace_id()))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-servable", b"cnn")]})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    await tracing.HttpSpans(app)(scope, receive, send)
    return list(sent[0]["headers"])


def test_http_spans_pass_unsampled_requests_straight_to_the_app() -> None:
    tracing.configure("127.0.0.1:9", 0.0, "unit")  # ratio 0: only a caller's sampled flag traces
    try:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            pass

        wrapped = tracing.HttpSpans(app)
        awaitable = wrapped(_http_scope(), None, None)
        assert awaitable.cr_code is app.__code__  # the app's own coroutine: no layer of the wrapper's
        asyncio.run(awaitable)
        calls: list[Any] = []
        asyncio.run(_seen_by_app(_http_scope(), calls))
        ((sent, trace),) = calls
        assert trace is None and sent["traceparent"].endswith("-00") and "tracestate" not in sent
    finally:
        tracing.shutdown()


def test_http_spans_follow_the_callers_flag() -> None:
    from loadtest.otlp_receiver import Receiver

    receiver = Receiver().start()
    trace_id, parent = "e" * 32, "f" * 16
    calls: list[Any] = []
    try:
        tracing.configure(receiver.endpoint, 0.0, "unit")
        unsampled = f"00-{trace_id}-{parent}-00"
        asyncio.run(_seen_by_app(_http_scope((b"traceparent", unsampled.encode()), (b"tracestate", b"v=1")), calls))
        sampled = ((b"traceparent", f"00-{trace_id}-{parent}-01".encode()), (b"tracestate", b"v=2"))
        asyncio.run(_seen_by_app(_http_scope(*sampled), calls))
    finally:
        tracing.shutdown()
        receiver.stop()
    (forwarded, no_trace), (sent, traced) = calls
    # the caller's "no" is sent on, with its tracestate (W3C: they travel together)
    assert forwarded == {"traceparent": unsampled, "tracestate": "v=1"} and no_trace is None
    assert traced == trace_id and sent["tracestate"] == "v=2"
    (span,) = receiver.spans()
    assert span.name == "POST /x" and span.trace_id == trace_id and span.parent_id == parent
    assert sent["traceparent"] == f"00-{trace_id}-{span.span_id}-01"
    assert span.attributes["http.response.status_code"] == 200 and span.attributes["tensorgate.servable"] == "cnn"


def test_the_receiver_process_counts_what_it_is_sent(tmp_path: Path) -> None:
    from loadtest.procs import Managed, free_port

    stats, port = tmp_path / "stats.json", free_port()
    command = [sys.executable, "-m", "loadtest.otlp_receiver", "--port", str(port), "--stats", str(stats)]
    receiver = Managed("receiver", command, tmp_path / "receiver.log")
    try:
        receiver.wait_ready(stats.exists, 30)
        assert json.loads(stats.read_text()) == {"spans": 0, "exports": 0}
        tracing.configure(f"127.0.0.1:{port}", 1.0, "unit")
        try:
            for index in range(3):
                with tracing.server_span(f"request {index}", {}), tracing.span("child"):
                    pass
        finally:
            tracing.shutdown()  # sends what waits, in one export
        counts = json.loads(stats.read_text())
        assert counts["spans"] == 6 and counts["exports"] >= 1
    finally:
        receiver.stop()


def test_a_full_queue_hands_over_full_batches_and_the_rest_leaves_at_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # no timed flush within the test
    from serving.tracing_export import Exporter

    exporter = Exporter("127.0.0.1:9", "unit")  # nothing listens: the exporter process logs a failed export
    try:
        for index in range(6):  # the fourth wakes the export thread
            exporter.add((1, index + 1, 0, "s", 1, 0, 0, None, None, None, None))
        deadline = time.monotonic() + 10
        while exporter.handed < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert exporter.handed == 4 and len(exporter.pending) == 2  # the two after it wait for more
    finally:
        exporter.shutdown()
    assert exporter.handed == 6 and not exporter.pending
