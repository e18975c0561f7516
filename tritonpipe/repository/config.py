"""The one place that turns tensor specs and serving options into config.pbtxt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.tensors import TensorSpec, dtype


@dataclass(frozen=True, kw_only=True)
class Batching:
    """Dynamic batching; ``None`` in :class:`Serving` turns it off."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Instances:
    count: int = 1
    kind: str = "cpu"  # "cpu" or "gpu"
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Serving:
    """How Triton schedules one model."""

    max_batch_size: int = 0
    batching: Batching | None = None
    instances: tuple[Instances, ...] = field(default_factory=lambda: (Instances(),))


@dataclass(frozen=True, kw_only=True)
class Step:
    """One ensemble step: model tensor name -> ensemble tensor name, both ways."""

    model: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]


def _tensors(specs: Sequence[TensorSpec], message: type) -> list[object]:
    return [
        message(name=s.name, data_type=pb.DataType.Value(dtype(s.dtype).config), dims=list(s.shape))
        for s in specs
    ]


def model_config(
    name: str,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    serving: Serving,
    backend: str = "",
    platform: str = "",
    parameters: Mapping[str, str] | None = None,
) -> pb.ModelConfig:
    """A ModelConfig for a single model run by ``backend`` or ``platform``."""
    config = pb.ModelConfig(
        name=name,
        backend=backend,
        platform=platform,
        max_batch_size=serving.max_batch_size,
        input=_tensors(inputs, pb.ModelInput),
        output=_tensors(outputs, pb.ModelOutput),
    )
    if serving.batching is not None:
        config.dynamic_batching.CopyFrom(
            pb.ModelDynamicBatching(
                preferred_batch_size=list(serving.batching.preferred_batch_size),
                max_queue_delay_microseconds=serving.batching.max_queue_delay_microseconds,
            )
        )
    for group in serving.instances:
        kind = (
            pb.ModelInstanceGroup.KIND_GPU
            if group.kind == "gpu"
            else pb.ModelInstanceGroup.KIND_CPU
        )
        config.instance_group.append(
            pb.ModelInstanceGroup(count=group.count, kind=kind, gpus=list(group.gpus))
        )
    for key, value in sorted((parameters or {}).items()):
        config.parameters[key].string_value = value
    return config


def ensemble_config(
    name: str,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    steps: Sequence[Step],
) -> pb.ModelConfig:
    """A ModelConfig with ``platform: "ensemble"`` chaining ``steps`` in order."""
    config = pb.ModelConfig(
        name=name,
        platform="ensemble",
        max_batch_size=max_batch_size,
        input=_tensors(inputs, pb.ModelInput),
        output=_tensors(outputs, pb.ModelOutput),
    )
    for step in steps:
        config.ensemble_scheduling.step.append(
            pb.ModelEnsembling.Step(
                model_name=step.model,
                model_version=-1,
                input_map=dict(step.input_map),
                output_map=dict(step.output_map),
            )
        )
    return config


def to_pbtxt(config: pb.ModelConfig) -> str:
    """Text format as Triton reads it; map entries are sorted so output is reproducible."""
    text: str = text_format.MessageToString(config, use_short_repeated_primitives=True)
    return text


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt text; raises google.protobuf.text_format.ParseError."""
    return text_format.Parse(text, pb.ModelConfig())
