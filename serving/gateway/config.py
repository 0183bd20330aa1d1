"""The gateway's one typed configuration: a YAML file overridden by ``TENSORGATE_*`` variables.

Read once at start (``load_settings``); a bad value stops the process with one line naming the key,
e.g. ``invalid gateway config: limits.max_body_bytes: Input should be greater than 0``.
Nested keys come from the environment with ``__``: ``TENSORGATE_LIMITS__MAX_BATCH_SIZE=64``;
dicts and lists as JSON: ``TENSORGATE_UPSTREAMS='{"default": {"targets": ["tfs:8500"]}}'``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from serving.gateway.discovery import parse_target

DEFAULT_UPSTREAM = "default"


class ConfigError(ValueError):
    """A config problem found at start; its message is the one line the process prints."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Section):
    """One upstream: TF Serving or the model server, at one or more targets: ``host:port``, or
    ``dns:///name:port`` / ``dns://server[:port]/name:port`` (resolved by the gateway, one channel per address)."""

    targets: list[str] = Field(default_factory=lambda: ["localhost:8500"], min_length=1)
    max_concurrency: int = Field(64, gt=0, description="in-flight calls to this upstream")
    max_queue: int = Field(256, ge=0, description="calls waiting for a slot; more are answered 429")
    resolve_s: float = Field(5.0, gt=0, description="how often dns: targets are resolved again")

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            parse_target(target)
        return targets


class TimeoutConfig(_Section):
    request_s: float = Field(10.0, gt=0, description="deadline of one request, retries included")
    status_poll_s: float = Field(2.0, gt=0, description="GetModelStatus poll period per servable")
    probe_s: float = Field(0.5, gt=0, description="probe period of an ejected target")
    metadata_ttl_s: float = Field(30.0, gt=0, description="cache lifetime of signature metadata")
    shutdown_grace_s: float = Field(10.0, ge=0, description="time to finish in-flight requests")
    header_read_s: float = Field(10.0, gt=0, description="time to receive a request's headers; slower: 408")
    body_read_s: float = Field(20.0, gt=0, description="time to receive a REST body after its headers; slower: 408")


class RetryConfig(_Section):
    attempts: int = Field(3, ge=1, description="tries per request on UNAVAILABLE or a CANCELLED from the server")
    backoff_initial_s: float = Field(0.02, ge=0)
    backoff_max_s: float = Field(0.5, ge=0)


class EjectionConfig(_Section):
    consecutive_failures: int = Field(3, ge=1, description="UNAVAILABLE or server-sent CANCELLED in a row: eject")


class ChannelConfig(_Section):
    max_message_bytes: int = Field(64 * 1024 * 1024, gt=0, description="send and receive cap")
    keepalive_time_s: float = Field(30.0, gt=0)
    keepalive_timeout_s: float = Field(10.0, gt=0)
    max_reconnect_backoff_s: float = Field(1.0, gt=0, description="so a restarted upstream is seen fast")


class BatchingConfig(_Section):
    max_rows: int = Field(32, ge=1, description="rows merged into one upstream call; 1: no merging")


class LimitsConfig(_Section):
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="REST bodies over this get 413")
    max_batch_size: int = Field(256, gt=0, description="rows per request; more get 400")
    max_image_pixels: int = Field(4096 * 4096, gt=0, description="uploads over width*height get 413")


class ServerConfig(_Section):
    """How the process runs: chosen by measurement (docs/loadtest.md, "The gateway's process settings")."""

    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto: uvloop when installed, else asyncio"
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="auto: httptools when installed, else h11 (pure Python)"
    )
    gc_freeze: bool = Field(True, description="after start, keep start-up objects out of the collector's way")
    gc_threshold: int = Field(700, ge=0, description="the collector's first-generation threshold (Python's 700)")
    workers: int = Field(1, ge=1, le=64, description="processes serving both ports (SO_REUSEPORT)")
    grpc_experiments: str = Field(
        "-event_engine_client",
        pattern=r"^[-a-z0-9_,]*$",
        description="gRPC core experiments, as GRPC_EXPERIMENTS (set before grpc loads; the variable, if set, wins); "
        "'': gRPC's defaults",
    )


class CorsConfig(_Section):
    """Cross-origin access for pages hosted elsewhere (the gateway's own /playground needs none)."""

    allow_origins: list[str] = Field(default_factory=list, description='empty: off; ["*"]: any origin')
    max_age_s: int = Field(600, ge=0, description="how long a browser may cache a preflight answer")

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"origin {origin!r} is not '*' or scheme://host[:port] (no path)")
        return origins


class TracingConfig(_Section):
    """OpenTelemetry traces to an OTLP/gRPC collector; off while ``otlp_endpoint`` is null."""

    otlp_endpoint: str | None = Field(None, description="host:port or http(s)://host:port of the collector")
    sample_ratio: float = Field(0.1, ge=0, le=1, description="share of requests traced when the caller did not decide")
    service_name: str = Field("tensorgate-gateway", min_length=1)


class RouteConfig(_Section):
    """A name that splits traffic by weight and optionally mirrors it to a candidate."""

    split: dict[str, float] = Field(min_length=1)
    shadow: str | None = None
    shadow_fraction: float = Field(1.0, ge=0, le=1)

    @field_validator("split")
    @classmethod
    def _check_weights(cls, split: dict[str, float]) -> dict[str, float]:
        if any(weight < 0 for weight in split.values()) or sum(split.values()) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return split


class EnsembleConfig(_Section):
    """A gateway ensemble: members answer in parallel and vote."""

    members: list[str] = Field(min_length=2)
    voting: Literal["soft", "hard", "weighted"] = "soft"
    weights: list[float] | None = None
    quorum: int | None = Field(None, ge=1, description="replies needed; default: all members")
    member_timeout_s: float = Field(2.0, gt=0)
    calibration_from: str | None = Field(
        "ensemble",
        description="servable whose model card holds the members' temperatures and weights (soft, hard); null: none",
    )

    @model_validator(mode="after")
    def _check(self) -> EnsembleConfig:
        if self.voting == "weighted" and (self.weights is None or len(self.weights) != len(self.members)):
            raise ValueError("weighted voting needs one weight per member")
        if self.quorum is not None and self.quorum > len(self.members):
            raise ValueError(f"quorum {self.quorum} exceeds {len(self.members)} members")
        return self

    @property
    def needed(self) -> int:
        return self.quorum if self.quorum is not None else len(self.members)


class Settings(BaseSettings):
    """Everything the gateway reads at start. See docs/gateway.md for each key."""

    model_config = SettingsConfigDict(env_prefix="TENSORGATE_", env_nested_delimiter="__", extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int | None = Field(8001, ge=0, le=65535, description="null: no gRPC front")
    repo: Path | None = Field(Path("models"), description="model repository: servables and labels")
    upstreams: dict[str, UpstreamConfig] = Field(
        default_factory=lambda: {DEFAULT_UPSTREAM: UpstreamConfig.model_validate({})}
    )
    servables: dict[str, str] = Field(
        default_factory=dict, description="servable -> upstream; empty: read model_config_file"
    )
    model_config_file: Path | None = Field(None, description="model_config_list to read; default <repo>/models.config")
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    ensembles: dict[str, EnsembleConfig] = Field(default_factory=dict)
    timeouts: TimeoutConfig = Field(default_factory=lambda: TimeoutConfig.model_validate({}))
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig.model_validate({}))
    ejection: EjectionConfig = Field(default_factory=lambda: EjectionConfig.model_validate({}))
    channel: ChannelConfig = Field(default_factory=lambda: ChannelConfig.model_validate({}))
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig.model_validate({}))
    batching: BatchingConfig = Field(default_factory=lambda: BatchingConfig.model_validate({}))
    cors: CorsConfig = Field(default_factory=lambda: CorsConfig.model_validate({}))
    tracing: TracingConfig = Field(default_factory=lambda: TracingConfig.model_validate({}))
    server: ServerConfig = Field(default_factory=lambda: ServerConfig.model_validate({}))
    api_keys: list[SecretStr] = Field(default_factory=list, description="empty: no auth")
    api_key_header: str = "x-api-key"
    request_key_header: str = "x-request-key"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if DEFAULT_UPSTREAM not in self.upstreams and len(self.upstreams) != 1:
            raise ValueError(f"upstreams: name one {DEFAULT_UPSTREAM!r} when there are several")
        for servable, upstream in self.servables.items():
            if upstream not in self.upstreams:
                raise ValueError(f"servables.{servable}: unknown upstream {upstream!r}")
        if self.server.workers > 1 and (self.http_port == 0 or self.grpc_port == 0):
            raise ValueError("server.workers: several workers share fixed ports; http_port and grpc_port cannot be 0")
        clashes = set(self.routes) & set(self.ensembles)
        if clashes:
            raise ValueError(f"routes and ensembles share names: {sorted(clashes)}")
        return self

    @property
    def default_upstream(self) -> str:
        return DEFAULT_UPSTREAM if DEFAULT_UPSTREAM in self.upstreams else next(iter(self.upstreams))


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), apply ``TENSORGATE_*`` variables, validate. Raises ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read {path}: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as error:
        raise ConfigError(_format_error(error)) from None
