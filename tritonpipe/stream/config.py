"""The stream job's config file: which bus, how events map to pipeline inputs, batching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tritonpipe.errors import SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisBus(_Strict):
    type: Literal["redis"] = "redis"
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis server URL")
    stream: str = Field(description="input stream the events are added to")
    group: str = Field("tritonpipe", description="consumer group the workers join")
    output: str = Field(description="output stream of predictions (one entry per event id)")
    dead_letter: str = Field(description="stream of events that could not be scored")
    claim_idle_ms: int = Field(
        30_000, gt=0, description="pending this long (a dead worker's) -> claimed by another"
    )


class NatsBus(_Strict):
    type: Literal["nats"] = "nats"
    url: str = Field("nats://127.0.0.1:4222", description="NATS server URL")
    stream: str = Field(description="JetStream stream holding the input subject")
    subject: str = Field(description="subject the events are published on")
    durable: str = Field("tritonpipe", description="durable pull consumer the workers share")
    output: str = Field(description="subject of predictions (deduplicated by event id)")
    dead_letter: str = Field(description="subject of events that could not be scored")
    ack_wait_s: float = Field(30.0, gt=0, description="unacked this long -> redelivered")
    dedupe_window_s: float = Field(
        3600.0, gt=0, description="how long the output stream remembers event ids (no duplicates)"
    )


# Connection options passed to aiokafka as they are (SASL, TLS, client id, timeouts); the
# ``ssl_*`` files become an SSL context. A ``${VAR}`` in a value is read from the environment.
KAFKA_CLIENT_OPTIONS = frozenset(
    {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "client_id",
        "request_timeout_ms",
        "retry_backoff_ms",
        "metadata_max_age_ms",
        "connections_max_idle_ms",
        "api_version",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
    }
)


class KafkaBus(_Strict):
    type: Literal["kafka"] = "kafka"
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="comma-separated host:port of the Kafka brokers"
    )
    topic: str = Field(description="input topic the events are produced to")
    group: str = Field("tritonpipe", description="consumer group the workers join")
    output: str = Field(description="output topic of predictions (keyed by event id)")
    dead_letter: str = Field(description="topic of events that could not be scored")
    partitions: int = Field(
        4, gt=0, description="partitions of the topics a worker creates when they are missing"
    )
    replication_factor: int = Field(1, gt=0, description="... and their replication factor")
    create_topics: bool = Field(True, description="create missing topics at start-up")
    session_timeout_ms: int = Field(
        10_000, gt=0, description="no heartbeat this long (a dead worker) -> its partitions move"
    )
    retry_after_ms: int = Field(
        30_000, gt=0, description="handed out, not acknowledged this long -> delivered again"
    )
    dedupe_window_s: float = Field(
        3600.0, gt=0, description="how far back a worker reads the output topic for event ids"
    )
    client: dict[str, Any] = Field(
        default_factory=dict, description="aiokafka connection options (SASL, TLS, client_id)"
    )

    @field_validator("client")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - KAFKA_CLIENT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; known: {sorted(KAFKA_CLIENT_OPTIONS)}")
        return value

    @property
    def stream(self) -> str:
        """The input topic (named ``stream`` like the other buses' input)."""
        return self.topic


class InputField(_Strict):
    field: str = Field(description="key of the value in the decoded event")
    dtype: str | None = Field(
        None, description="Triton dtype of the pipeline input (default: the pipeline's)"
    )
    shape: list[int] | None = Field(
        None, description="dims of one event's value, without the batch (default: the pipeline's)"
    )

    @field_validator("dtype")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        from tritonpipe.tensors import dtype

        if value is None:
            return None
        try:
            return dtype(value).triton
        except SpecError as exc:  # pydantic reports ValueErrors with the field's location
            raise ValueError(str(exc)) from exc


class Batching(_Strict):
    max_events: int = Field(32, gt=0, description="score when this many events are in hand")
    max_wait_ms: int = Field(20, ge=0, description="... or when the first has waited this long")


class JobConfig(_Strict):
    """A stream job: bus, decoding, pipeline and batching (YAML; paths relative to the file)."""

    pipeline: str = Field(description="pipeline spec (YAML) or built model repository")
    name: str | None = Field(None, description="ensemble, stage or model to run")
    bus: Annotated[RedisBus | NatsBus | KafkaBus, Field(discriminator="type")]
    format: Literal["json", "msgpack"] = Field("json", description="encoding of the payload")
    payload_field: str = Field("data", description="Redis entry field holding the payload")
    id_field: str = Field("id", description="event key with its id (outputs are keyed by it)")
    time_field: str | None = Field("ts", description="event key with its time (epoch seconds)")
    inputs: dict[str, InputField] = Field(description="pipeline input -> event field")
    outputs: list[str] | None = Field(None, description="pipeline outputs to write (all)")
    batch: Batching = Batching()
    max_attempts: int = Field(3, gt=0, description="deliveries before a failing event is dead")
    log: dict[str, Any] | None = Field(None, description="prediction-log sink config")
    before_score: str | None = Field(
        None,
        description="file.py:function called with each batch's decoded events before scoring "
        "(e.g. push them into feature windows), and once with none at start-up (to load what it "
        "needs); ``parameters`` are passed to it",
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="for before_score")
    base: Path = Field(Path("."), exclude=True)

    def pipeline_path(self) -> Path:
        path = Path(self.pipeline)
        return path if path.is_absolute() else self.base / path


def load_config(path: str | Path, **overrides: Any) -> JobConfig:
    """Read and validate a job config; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the stream job config: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a stream job config is a mapping")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return JobConfig.model_validate({**raw, "base": path.parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from exc
