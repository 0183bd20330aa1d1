"""``python -m serving.modelserver --port=8500 --rest_api_port=8501 --model_config_file=...``"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving.modelserver import config, flags


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    log = logging.getLogger("serving.modelserver")
    try:
        parsed = flags.parse(sys.argv[1:] if argv is None else argv)
    except flags.FlagError as error:
        log.error("%s", error)
        return 2
    if parsed.version:
        print("TensorFlow ModelServer: tensorgate-embedded\nTensorFlow Library: (loaded on demand)")
        return 0
    flags.report_ignored(parsed)
    from serving.modelserver.app import StopDuringLoad, serve

    try:
        asyncio.run(serve(parsed))
    except StopDuringLoad:
        log.info("Stopped while loading models")
        return 0
    except config.ConfigError as error:
        log.error("Failed to start server: %s", error)
        return 1
    except (OSError, ValueError, RuntimeError) as error:
        log.error("Failed to start server: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    # Exit now: TensorFlow's and the runtimes' worker threads (and a model load a signal interrupted)
    # would otherwise hold the interpreter's shutdown for seconds.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
