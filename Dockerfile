# syntax=docker/dockerfile:1
# tensorgate images, one target per role (docs/deploy.md):
#   docker build --target gateway     -t tensorgate/gateway:0.1.0 .      FastAPI gateway, no TensorFlow
#   docker build --target modelserver -t tensorgate/modelserver:0.1.0 .  embedded model server (CPU runtimes)
#   docker build --target trainer     -t tensorgate/trainer:0.1.0 .      training + export
#   docker build --target loadtest    -t tensorgate/loadtest:0.1.0 .     Locust with loadtest/locustfile.py
# Builder stages install into /opt/venv; final stages copy only that venv and the user, so no compiler,
# pip cache or apt list is left in them. Everything runs as uid 10001.

FROM python:3.11.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TENSORGATE_REPO=/models
RUN groupadd --gid 10001 tensorgate \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tensorgate
WORKDIR /app

# The gateway's venv: the base dependencies only (pyproject keeps them free of TensorFlow) and only the
# serving package, so training/export code is not even present.
FROM base AS build-gateway
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY serving serving
RUN pip install --no-cache-dir . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)"

# TensorFlow, LiteRT, onnxruntime and the converters: the model server and the trainer share it.
FROM base AS build-ml
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY serving serving
COPY training training
COPY export export
# Versions come from pyproject.toml (DL3013 asks for pins on the command line).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[ml]"

# Locust and the benchmark extras, no TensorFlow (the gRPC user reads serving/protos; the images come
# from training/data.py, which is plain numpy).
FROM base AS build-loadtest
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY serving serving
COPY training training
COPY loadtest loadtest
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[bench]"

FROM base AS gateway
COPY --from=build-gateway /opt/venv /opt/venv
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TENSORGATE_HTTP_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["python", "-m", "serving.gateway"]

FROM base AS modelserver
COPY --from=build-ml /opt/venv /opt/venv
USER 10001
EXPOSE 8500 8501
# gRPC health (grpc.health.v1) answers SERVING once every configured model has loaded.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; s = g.HealthStub(grpc.insecure_channel('127.0.0.1:8500')).Check(h.HealthCheckRequest(), timeout=2).status; raise SystemExit(s != h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["python", "-m", "serving.modelserver"]
CMD ["--port=8500", "--rest_api_port=8501", "--model_config_file=/models/modelserver.config"]

# A batch job: train, then export (docker run ... tensorgate/trainer export --repo /models).
FROM base AS trainer
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-ml /opt/venv /opt/venv
# No home directory: Keras and matplotlib keep their caches in /tmp.
ENV HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
USER 10001
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m"]
CMD ["training", "--model", "all", "--profile", "full", "--repo", "/models"]

FROM base AS loadtest
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-loadtest /opt/venv /opt/venv
COPY loadtest loadtest
USER 10001
EXPOSE 8089 5557
HEALTHCHECK NONE
ENTRYPOINT ["locust", "-f", "/app/loadtest/locustfile.py"]
