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
    bus: Annotated[RedisBus | NatsBus, Field(discriminator="type")]
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
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from exc
