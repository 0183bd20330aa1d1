# First version: the trainer image (training + export). A later issue adds the gateway and
# model server targets.
FROM python:3.11-slim-bookworm AS trainer
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY training training
COPY export export
COPY serving serving
COPY loadtest loadtest
RUN pip install --no-cache-dir '.[ml]'
RUN useradd --create-home --uid 1000 tensorgate
USER tensorgate
ENTRYPOINT ["python", "-m", "training"]
CMD ["--model", "all", "--profile", "full", "--repo", "/models"]
