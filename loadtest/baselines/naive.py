"""The tutorial pattern: FastAPI, a pydantic body, Keras ``model.predict`` on every request.

    python -m loadtest.baselines.naive --model models/cnn/1/assets.extra/keras_model.keras --port 9000

Deliberately unoptimised (that is what it measures): a sync route run in Starlette's thread pool,
pydantic parsing of nested lists, and ``predict`` with its per-call setup; one uvicorn worker.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class PredictRequest(BaseModel):
    instances: list[Any]


def build_app(model_path: Path, servable: str) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import keras

        import training.models.transformer  # noqa: F401  (registers the custom layers)

        state["model"] = keras.saving.load_model(model_path, compile=False)
        state["model"].predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"/v1/models/{servable}:predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        images = np.array(request.instances, dtype=np.float32).reshape(-1, 28, 28, 1)
        probabilities = state["model"].predict(images, verbose=0)
        return {
            "predictions": [{"class_id": int(np.argmax(row)), "probabilities": row.tolist()} for row in probabilities]
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="keras_model.keras")
    parser.add_argument("--servable", default="cnn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model, args.servable), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
