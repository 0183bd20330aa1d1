"""``python -m serving.modelserver --port=8500 --rest_api_port=8501 --model_config_file=...``

Start-up reports follow TF Serving's ``main.cc``: a flag value that does not parse prints the usage
on stdout and exits 255; an unknown argument prints ``unknown argument: ARG`` and the usage, and the
server starts anyway; a start-up failure prints ``Failed to start server. Error: <code>: <message>``
on stdout (after any protobuf parse errors on stderr) and exits 255.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving.modelserver import flags
from serving.modelserver.config import ConfigError

FAILED = 255  # main.cc returns -1


def _version() -> str:
    """main.cc's two lines: this server's version, then the TensorFlow library's."""

    def installed(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "(not installed)"

    server, library = installed("tensorgate"), installed("tensorflow")
    return f"TensorFlow ModelServer: tensorgate-{server}\nTensorFlow Library: {library}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    log = logging.getLogger("serving.modelserver")
    parsed = flags.parse(sys.argv[1:] if argv is None else argv)
    if not parsed.ok:
        print(flags.usage(), end="", flush=True)
        return FAILED
    if parsed.flags.version:
        print(_version(), flush=True)
        return 0
    if parsed.unknown:
        print(f"unknown argument: {parsed.unknown[0]}\n{flags.usage()}", end="", flush=True)
    flags.report_ignored(parsed.flags)
    from serving.modelserver.app import StopDuringLoad, serve

    try:
        asyncio.run(serve(parsed.flags))
    except StopDuringLoad:
        log.info("Stopped while loading models")
        return 0
    except ConfigError as error:
        for line in error.logged:
            log.error("%s", line)
        print(f"Failed to start server. Error: {error.code}: {error.message}", flush=True)
        return FAILED
    return 0


if __name__ == "__main__":
    status = main()
    # Exit now: TensorFlow's and the runtimes' worker threads (and a model load a signal interrupted)
    # would otherwise hold the interpreter's shutdown for seconds.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
