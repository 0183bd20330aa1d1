"""serving.tracing without a collector: off by default (OpenTelemetry not even imported), the hooks'
null behaviour, and the Server-Timing value."""

from __future__ import annotations

import subprocess
import sys
import time

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
