"""Locust users for tensorgate (and any TF Serving-compatible endpoint).

    locust -f loadtest/locustfile.py --host http://localhost:8000 RestUser
    locust -f loadtest/locustfile.py --host localhost:8001 GrpcUser --servable vote --batch 8

``RestUser`` posts pre-encoded Fashion-MNIST test images (``--payload instances``: TF Serving's JSON at
``/v1/models/<servable>:predict``; ``b64`` / ``multipart``: PNGs to the gateway's
``/v1/classify/<servable>``; ``v2-json`` / ``v2-binary``: the Open Inference Protocol's JSON tensors or
binary tensor data at ``/v2/models/<servable>/infer``). ``GrpcUser`` calls ``PredictionService/Predict``
with TF Serving's protos (no TensorFlow needed), or with ``--payload v2-grpc`` the v2 protocol's
``GRPCInferenceService/ModelInfer``. Every answer is checked: status, shape, and the predicted class against the
image's label. A wrong class is not a failure: it is counted per request name and reported at the end
(log line, ``<csv prefix>_answers.json``, ``/answers`` in the web UI), so accuracy on the wire is
visible under load. Options (each also an environment variable, see ``--help``): ``--servable``,
``--payload``, ``--batch``, ``--grpc-host``, ``--target-rps``, ``--label-shift``, ``--timeout``, ``--api-key``.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import loadtest  # noqa: F401  (importable when installed or run from the repository root)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import grpc.experimental.gevent as grpc_gevent
import orjson
from locust import FastHttpUser, User, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest import payloads
from loadtest.answers import ANSWERS

grpc_gevent.init_gevent()  # grpc's blocking calls must yield to gevent, or one user blocks them all
MAX_MESSAGE = 64 * 1024 * 1024
log = logging.getLogger("tensorgate.loadtest")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("tensorgate")
    group.add_argument("--servable", env_var="LOCUST_SERVABLE", default="cnn", help="model, route or ensemble name")
    group.add_argument(
        "--payload",
        env_var="LOCUST_PAYLOAD",
        default="instances",
        choices=["instances", "b64", "multipart", "v2-json", "v2-binary", "grpc", "v2-grpc"],
        help="REST body: TF Serving instances JSON, base64 PNG JSON, multipart PNG, v2 JSON or v2 binary tensors; "
        "gRPC (GrpcUser): grpc (TF Serving Predict) or v2-grpc (ModelInfer)",
    )
    group.add_argument("--batch", env_var="LOCUST_BATCH", type=int, default=1, help="images per request")
    group.add_argument("--grpc-host", env_var="LOCUST_GRPC_HOST", default="", help="host:port for GrpcUser (--host)")
    group.add_argument(
        "--target-rps", env_var="LOCUST_TARGET_RPS", type=float, default=0.0, help="total request rate; 0: closed loop"
    )
    group.add_argument("--label-shift", env_var="LOCUST_LABEL_SHIFT", type=int, default=0, help=_SHIFT_HELP)
    group.add_argument("--timeout", env_var="LOCUST_TIMEOUT", type=float, default=30.0, help="gRPC deadline, s")
    group.add_argument("--api-key", env_var="LOCUST_API_KEY", default="", help="sent as x-api-key (header / metadata)")
    group.add_argument("--events-file", env_var="LOCUST_EVENTS_FILE", default="", help=_EVENTS_HELP)


_EVENTS_HELP = (
    "append one JSON line per request (wall time, latency, ok, error, payload index, classes, model version) "
    "to this file, for checks that need every request (reliability runs)"
)
_SHIFT_HELP = "expect (label + N) mod 10: a deliberately wrong label, to check the wrong-answer counter"
_PAYLOADS: dict[tuple[str, str, int, int], list[payloads.Payload]] = {}
_PAYLOADS_LOCK = threading.Lock()


def shared_payloads(kind: str, servable: str, batch: int, shift: int) -> list[payloads.Payload]:
    """Encoded once per process and shared by every user."""
    key = (kind, servable, batch, shift)
    with _PAYLOADS_LOCK:
        if key not in _PAYLOADS:
            _PAYLOADS[key] = payloads.build(kind, servable, batch, label_shift=shift)
        return _PAYLOADS[key]


_STARTS = itertools.count()


def rotated(pool: list[payloads.Payload]) -> Iterator[tuple[int, payloads.Payload]]:
    """(index in pool, payload), each user starting one payload further than the last, so every image
    is sent about as often (``id(self)`` offsets were multiples of 16: some images were never sent)."""
    start = next(_STARTS) % len(pool)
    order = list(range(start, len(pool))) + list(range(start))
    return itertools.cycle([(index, pool[index]) for index in order])


class _Paced:
    """Closed loop by default; with ``--target-rps R`` each of U users sends one request every U/R s."""

    environment: Environment
    _next_at = 0.0

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        rate = float(getattr(options, "target_rps", 0.0) or 0.0) if options else 0.0
        if rate <= 0:
            return 0.0
        users = max(1, int(getattr(options, "num_users", 1) or 1))
        now = time.monotonic()
        self._next_at = max(self._next_at + users / rate, now)
        return self._next_at - now

    def option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options
        return getattr(options, name, default) if options is not None else default


class RestUser(_Paced, FastHttpUser):
    """POSTs pre-encoded images over HTTP/1.1 keep-alive (geventhttpclient)."""

    network_timeout = 60.0
    connection_timeout = 60.0

    def on_start(self) -> None:
        self.kind = self.option("payload", "instances")
        self.servable = self.option("servable", "cnn")
        self.batch = int(self.option("batch", 1))
        self.path = payloads.path_for(self.kind, self.servable)
        key = self.option("api_key", "")
        self.auth = {"x-api-key": key} if key else {}
        self.v2 = self.kind.startswith("v2-")
        self.name = f"{self.kind} {self.servable} x{self.batch}"
        pool = shared_payloads(self.kind, self.servable, self.batch, int(self.option("label_shift", 0)))
        self.cycle = rotated(pool)

    @task
    def predict(self) -> None:
        index, payload = next(self.cycle)
        headers = {"Content-Type": payload.content_type, **self.auth, **dict(payload.headers)}
        context: dict[str, Any] = {"payload": index}
        with self.client.post(
            self.path,
            data=payload.body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=headers,
            name=self.name,
            catch_response=True,
            context=context,
        ) as response:
            # FastHttpSession fires the event with a copy of ``context``: fill in the copy it will send
            context = response.request_meta.get("context", context)
            context["status"] = response.status_code
            context["version"] = (response.headers or {}).get("x-model-version", "")
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                if self.v2:
                    length = (response.headers or {}).get("inference-header-content-length")
                    classes = payloads.v2_class_ids(response.content or b"", length, self.batch)
                else:
                    classes = payloads.rest_class_ids(response.content or b"", self.batch)
            except payloads.AnswerError as error:
                response.failure(str(error))
                return
            context["classes"] = classes
            ANSWERS.record(self.name, len(classes), payloads.wrong_count(classes, payload.labels))


class GrpcUser(_Paced, User):
    """Calls PredictionService/Predict on one channel per user; fires Locust request events."""

    def on_start(self) -> None:
        target = self.option("grpc_host", "") or self.host or "localhost:8500"
        for scheme in ("grpc://", "http://"):
            target = target.removeprefix(scheme)
        self.servable = self.option("servable", "cnn")
        self.batch = int(self.option("batch", 1))
        self.timeout = float(self.option("timeout", 30))
        kind = self.option("payload", "grpc")
        self.kind = kind if kind in payloads.GRPC_KINDS else "grpc"
        self.name = f"{self.kind} {self.servable} x{self.batch}"
        options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
        self.channel = grpc.insecure_channel(target.rstrip("/"), options=options)
        from serving import protos

        response = protos.ModelInferResponse if self.kind == "v2-grpc" else protos.PredictResponse
        self.classes = payloads.v2_grpc_class_ids if self.kind == "v2-grpc" else payloads.grpc_class_ids
        self.call = self.channel.unary_unary(
            payloads.GRPC_METHODS[self.kind], request_serializer=None, response_deserializer=response.FromString
        )
        key = self.option("api_key", "")
        self.metadata = (("x-api-key", key),) if key else None
        pool = shared_payloads(self.kind, self.servable, self.batch, int(self.option("label_shift", 0)))
        self.cycle = rotated(pool)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def predict(self) -> None:
        index, payload = next(self.cycle)
        started = time.perf_counter()
        exception: Exception | None = None
        length = 0
        context: dict[str, Any] = {"payload": index}
        try:
            response = self.call(payload.body, timeout=self.timeout, metadata=self.metadata)
            length = response.ByteSize()
            if self.kind == "v2-grpc":
                context["version"] = response.model_version
            else:
                context["version"] = str(response.model_spec.version.value or "")
            classes = self.classes(response, self.batch)
            context["classes"] = classes
            context["status"] = "OK"
        except grpc.RpcError as error:
            context["status"] = error.code().name
            exception = RuntimeError(f"{error.code().name}: {error.details()}")
        except payloads.AnswerError as error:
            exception = error
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.name,
            response_time=elapsed_ms,
            response_length=length,
            exception=exception,
            context=context,
        )
        if exception is None:
            ANSWERS.record(self.name, len(classes), payloads.wrong_count(classes, payload.labels))


@events.request.add_listener
def _latency(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    ANSWERS.request(name, response_time, exception is not None, str(exception)[:200] if exception else "")


class _EventLog:
    """One JSON line per request; written by the process that sent it (each worker its own file)."""

    def __init__(self) -> None:
        self.stream: Any = None

    def open(self, path: str) -> None:
        if path and self.stream is None:
            self.stream = open(path, "a", buffering=1)  # noqa: SIM115  (open for the whole run)

    def write(self, name: str, response_time: float, exception: Any, context: dict[str, Any] | None) -> None:
        if self.stream is None:
            return
        row = {"t": time.time(), "name": name, "ms": round(response_time, 3), "ok": exception is None}
        if exception is not None:
            row["error"] = str(exception)[:300]
        row.update(context or {})
        self.stream.write(orjson.dumps(row).decode() + "\n")


EVENTS = _EventLog()


@events.request.add_listener
def _event(name: str, response_time: float, exception: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
    EVENTS.write(name, response_time, exception, context)


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    if environment.web_ui is not None and environment.web_ui.app is not None:
        environment.web_ui.app.add_url_rule("/answers", "answers", lambda: ANSWERS.summary())
    # encode before the test starts: under load this takes seconds, which would eat a short --run-time
    options = environment.parsed_options
    if options is None:
        return
    EVENTS.open(getattr(options, "events_file", "") or "")
    names = {user_class.__name__ for user_class in environment.user_classes}
    batch, shift = int(getattr(options, "batch", 1)), int(getattr(options, "label_shift", 0))
    servable = getattr(options, "servable", "cnn")
    kind = getattr(options, "payload", "instances")
    if "RestUser" in names and kind not in payloads.GRPC_KINDS:
        shared_payloads(kind, servable, batch, shift)
    if "GrpcUser" in names:
        shared_payloads(kind if kind in payloads.GRPC_KINDS else "grpc", servable, batch, shift)


@events.test_start.add_listener
def _reset(**_: Any) -> None:
    ANSWERS.reset()


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict[str, Any]) -> None:
    data["tensorgate_answers"] = ANSWERS.take_counts()
    data["tensorgate_requests"] = ANSWERS.take_requests()


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict[str, Any]) -> None:
    ANSWERS.merge_counts(data.get("tensorgate_answers", {}))
    ANSWERS.merge_requests(data.get("tensorgate_requests", {}))


@events.quitting.add_listener
def _write(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    summary = ANSWERS.summary()
    for name, counts in summary["answers"].items():
        log.info(
            "answers %s: %d images, %d wrong (%.2f%%)", name, counts["images"], counts["wrong"], counts["wrong_pct"]
        )
    prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
    if prefix:
        ANSWERS.write(Path(f"{prefix}_answers.json"))
