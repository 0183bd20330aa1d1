"""``python -m serving.gateway [--config gateway.yaml]``: REST on 8000, gRPC on 8001."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from serving.gateway import workers
from serving.gateway.config import ConfigError, load_settings

# Nothing above imports grpc: server.grpc_experiments must reach gRPC's core before it loads.
if TYPE_CHECKING:
    from serving.http_timeouts import HttpParser

log = logging.getLogger("tensorgate.gateway")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving.gateway", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config (TENSORGATE_* variables override it)")
    parser.add_argument("--port", type=int, help="HTTP port (http_port)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (grpc_port)")
    parser.add_argument("--repo", type=Path, help="model repository (repo)")
    parser.add_argument("--upstream", help="targets of the default upstream, comma-separated host:port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    overrides: dict[str, Any] = {}
    if arguments.port is not None:
        overrides["http_port"] = arguments.port
    if arguments.grpc_port is not None:
        overrides["grpc_port"] = arguments.grpc_port
    if arguments.repo is not None:
        overrides["repo"] = arguments.repo
    if arguments.upstream:
        overrides["upstreams"] = {"default": {"targets": arguments.upstream.split(",")}}
    try:
        settings = load_settings(arguments.config, **overrides)
        grpc_experiments(settings.server.grpc_experiments)
        from serving.http_timeouts import timed_http_protocol  # imports grpc (serving.errors)

        loop = event_loop(settings.server.event_loop)
        parser = http_parser(settings.server.http_parser)
        if settings.server.workers > 1 and not workers.is_worker():
            return workers.supervise(settings.server.workers, sys.argv[1:] if argv is None else argv)
        from serving.gateway.accesslog import configure_logging
        from serving.gateway.main import create_app

        configure_logging(settings.log_level)
        app = create_app(settings)
    except ConfigError as error:
        print(f"invalid gateway config: {error}", file=sys.stderr)
        return 2
    log.info(
        "gateway starting: http %s:%s, grpc %s, %s event loop, %s HTTP parser, gRPC experiments %r",
        settings.host,
        settings.http_port,
        settings.grpc_port,
        loop,
        parser,
        os.environ.get("GRPC_EXPERIMENTS", ""),
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.http_port,
        loop=loop,  # grpc.aio and uvicorn share this loop
        http=timed_http_protocol(settings.timeouts.header_read_s, parser),  # with a header timeout
        ws="none",  # no websockets: nothing to import for them
        access_log=False,  # ours is structured: serving.gateway.accesslog
        server_header=False,  # "server: uvicorn" says nothing a client needs
        log_config=None,
        timeout_graceful_shutdown=int(settings.timeouts.shutdown_grace_s) or None,
    )
    sockets = [workers.reuseport_socket(settings.host, settings.http_port)] if workers.is_worker() else None
    _Server(config, app, settings.timeouts.shutdown_grace_s).run(sockets=sockets)
    return 0


def event_loop(choice: str) -> str:
    """uvloop (grpc.aio runs on it; measured faster, docs/loadtest.md) unless asked for asyncio or not installed."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("server.event_loop: uvloop is not installed (pip install uvloop)") from None
        return "asyncio"
    return "uvloop"


def grpc_experiments(experiments: str) -> None:
    """Hand ``server.grpc_experiments`` to gRPC's core (read once, when grpc loads), unless the
    environment already sets GRPC_EXPERIMENTS; worker processes inherit it."""
    if not experiments or "GRPC_EXPERIMENTS" in os.environ:
        return
    if "grpc" in sys.modules:  # only an in-process start (tests) gets here with grpc loaded
        log.warning("server.grpc_experiments ignored: grpc was loaded before the config was read")
        return
    os.environ["GRPC_EXPERIMENTS"] = experiments


def http_parser(choice: str) -> HttpParser:
    """httptools (C; measured faster, docs/loadtest.md) unless asked for h11 or not installed."""
    if choice == "h11":
        return "h11"
    try:
        import httptools  # noqa: F401
    except ImportError:
        if choice == "httptools":
            raise ConfigError("server.http_parser: httptools is not installed (pip install httptools)") from None
        return "h11"
    return "httptools"


class _Server(uvicorn.Server):
    """uvicorn's server, with the gRPC front draining at the same time as HTTP (not after it)."""

    def __init__(self, config: uvicorn.Config, app: Any, grace: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        front = self._app.state.grpc_front
        stopping = [front.stop(self._grace)] if front is not None else []
        await asyncio.gather(super().shutdown(sockets), *stopping)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the SIGTERM/SIGINT it drained for, so the process would end with -15 after
        # a clean drain; a graceful stop of this program exits 0 instead.
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


if __name__ == "__main__":
    sys.exit(main())
