"""The pipeline spec (YAML): stages, scoring models, how Triton serves each, and the ensembles
that chain them. Validated by pydantic; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from tritonpipe.errors import SpecError, did_you_mean
from tritonpipe.repository.config import Batching, Instances, Serving
from tritonpipe.tensors import DTYPES, TensorSpec, dtype


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tensor(_Strict):
    name: str = Field(description="Tensor name as clients and the ensemble see it.")
    dtype: str = Field(description=f"Triton dtype: one of {', '.join(DTYPES)}.")
    shape: list[int] = Field(description="Dims without the batch dimension; -1 is dynamic.")
    range: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Input only: [low, high], both inclusive; a value outside is refused "
        "(`input 'cat': 50 is outside [0, 49]`).",
    )
    allow_nan: bool = Field(
        False, description="Input only: NaN and +/-Inf are taken (refused by default)."
    )
    categories: list[str] | None = Field(
        None,
        description="Input only (BYTES): the strings it takes; any other is refused "
        "(`input 'sensor_type': unknown category 'fan'`).",
    )
    binary: bool = Field(
        False,
        description="Output only (BYTES): raw bytes, stored as binary/BLOB/BYTEA. By default a "
        "BYTES output is UTF-8 text, stored as a string everywhere.",
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        try:
            return dtype(value).triton
        except SpecError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in value):
            raise ValueError(f"{value}: each dim is a positive size or -1")
        return value

    def spec(self) -> TensorSpec:
        return TensorSpec(name=self.name, dtype=self.dtype, shape=tuple(self.shape))


class DynamicBatching(_Strict):
    max_queue_delay_microseconds: int = Field(
        0, ge=0, description="How long the batcher waits for more requests to fill a batch."
    )
    preferred_batch_size: list[int] = Field(
        default_factory=list, description="Batch sizes the batcher tries to form."
    )


class InstanceGroup(_Strict):
    count: int = Field(1, ge=1, description="Model instances of this kind.")
    kind: Literal["cpu", "gpu"] = Field("cpu", description="Where the instances run.")
    gpus: list[int] = Field(default_factory=list, description="GPU ids (gpu kind only).")


class ServingOptions(_Strict):
    max_batch_size: int = Field(64, ge=0, description="Largest batch; 0 turns batching off.")
    dynamic_batching: DynamicBatching | None = Field(
        default_factory=lambda: DynamicBatching(), description="Dynamic batcher; null turns it off."
    )
    instance_groups: list[InstanceGroup] = Field(
        default_factory=lambda: [InstanceGroup(count=1, kind="cpu")],
        description="Instances that serve the model.",
    )

    @model_validator(mode="after")
    def _batch_sizes(self) -> ServingOptions:
        if self.dynamic_batching is not None:
            for size in self.dynamic_batching.preferred_batch_size:
                if not 1 <= size <= self.max_batch_size:
                    raise ValueError(
                        f"dynamic_batching.preferred_batch_size {size} is outside "
                        f"1..max_batch_size ({self.max_batch_size})"
                    )
            if self.max_batch_size == 0:
                raise ValueError("dynamic_batching needs max_batch_size > 0 (or set it to null)")
        return self

    def serving(self) -> Serving:
        batching = None
        if self.dynamic_batching is not None:
            batching = Batching(
                max_queue_delay_microseconds=self.dynamic_batching.max_queue_delay_microseconds,
                preferred_batch_size=tuple(self.dynamic_batching.preferred_batch_size),
            )
        groups = tuple(
            Instances(count=g.count, kind=g.kind, gpus=tuple(g.gpus)) for g in self.instance_groups
        )
        return Serving(max_batch_size=self.max_batch_size, batching=batching, instances=groups)


class Stage(ServingOptions):
    function: str = Field(
        description="'file.py:function' relative to the spec; batched arrays in, dict out."
    )
    inputs: list[Tensor] = Field(min_length=1, description="Keyword arguments of the function.")
    outputs: list[Tensor] = Field(min_length=1, description="Keys of the dict it returns.")
    parameters: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Extra keyword arguments, fixed at build time: any JSON value (numbers, "
        "strings, booleans, null, lists, nested mappings), passed to the function as it is "
        "written (lists as Python lists).",
    )

    @field_validator("function")
    @classmethod
    def _file_ref(cls, value: str) -> str:
        module, sep, func = value.rpartition(":")
        if not sep or not module.endswith(".py") or not func.isidentifier():
            raise ValueError(f"{value!r}: expected 'path/to/file.py:function'")
        return value


class Shadow(_Strict):
    """A challenger scored beside a scoring model on sampled requests, never answering."""

    registry: str | None = Field(
        None, description="Challenger version: 'models:/<name>@<alias>' or 'models:/<name>/<n>'."
    )
    export: Path | None = Field(
        None, description="Challenger export folder instead of registry, relative to the spec."
    )
    sample: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of requests the challenger scores too (0-1]."
    )
    queue_size: int = Field(
        1000, ge=1, description="Sampled requests waiting for the challenger; more are skipped."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Shadow:
        if (self.registry is None) == (self.export is None):
            raise ValueError("give exactly one of registry (models:/...) and export (a folder)")
        return self


class ScoringModel(ServingOptions):
    export: Path = Field(
        Path(), description="Export folder (with manifest.json), relative to the spec."
    )
    # Model registry: resolved into an export folder by tritonpipe.registry.transform at build.
    registry: str | None = Field(
        None,
        description="MLflow registry version instead of export: 'models:/<name>/<version>' or "
        "'models:/<name>@<alias>'; downloaded and checked against its manifest by build.",
    )
    format: Literal["onnx", "torchscript", "aoti"] = Field(
        description="Which exported artifact to serve (aoti: python runtime only)."
    )
    runtime: Literal["python", "native"] = Field(
        "python",
        description="python: Python backend running onnxruntime/torch (any Triton); "
        "native: onnxruntime_onnx / pytorch_libtorch platforms (NGC containers).",
    )

    shadow: Shadow | None = Field(
        None,
        description="Score sampled requests with a challenger too, on the same inputs; the "
        "answer stays this model's and both outputs are logged (needs the ensemble's log:).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ScoringModel:
        if ("export" in self.model_fields_set) == (self.registry is not None):
            raise ValueError("give exactly one of export (a folder) and registry (models:/...)")
        return self


class StepRef(_Strict):
    model: str = Field(description="A stage, scoring model or ensemble of this spec.")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Model input -> ensemble tensor (default: same name)."
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Model output -> ensemble tensor (default: same name)."
    )


# Feature lookups (desugared into a stage by tritonpipe.features.transform) and
# prediction logs (config parameters written by the same transform).


class MissingEntity(_Strict):
    policy: Literal["defaults", "reject"] = Field(
        "defaults",
        description="defaults: fill the entity's features with defaults and set the flag output; "
        "reject: answer INVALID_ARG naming the entity.",
    )
    defaults: dict[str, float] = Field(
        default_factory=dict, description="Stored feature -> value when missing (default 0)."
    )
    flag: str | None = Field(
        "entity_found", description="BOOL[1] output: true where the entity was found (defaults)."
    )


class FeatureLookup(ServingOptions):
    repo: Path = Field(description="Feast repository (feature_store.yaml), relative to the spec.")
    feature_service: str = Field(description="Feast feature service to read; resolved at load.")
    entity_keys: list[Tensor] = Field(
        min_length=1, description="Request tensors that are the entities' join keys."
    )
    request_data: list[Tensor] = Field(
        default_factory=list, description="Other request tensors, passed to the transform."
    )
    transform: str | None = Field(
        None,
        description="'file.py:function'(stored, request) -> dict of outputs (on-demand features); "
        "without it the outputs are stored features by name.",
    )
    modules: list[Path] = Field(
        default_factory=list, description="Extra files the transform imports (copied beside it)."
    )
    outputs: list[Tensor] = Field(min_length=1, description="Tensors the lookup step returns.")
    missing: MissingEntity = Field(
        default_factory=lambda: MissingEntity(), description="What to do with unknown entities."
    )
    online_store: dict[str, str | int | float | bool] | None = Field(
        None, description="Replaces feature_store.yaml's online_store (e.g. {type: redis, ...})."
    )


class PredictionLog(_Strict):
    sink: dict[str, str | int | float | bool] = Field(
        description="Sink config: {type: parquet, path: ...} (relative to the repository's "
        "parent folder) or {type: redis, url: ..., stream: ...}; see tritonpipe.predlog."
    )
    entity_keys: list[str] = Field(
        default_factory=list, description="Last-step inputs logged as the entity keys."
    )
    features: str | None = Field(
        None, description="Last-step input logged as the feature vector used."
    )
    queue_size: int = Field(10000, ge=1, description="Records waiting for the writer, at most.")


class Ensemble(_Strict):
    steps: list[StepRef | str] = Field(min_length=1, description="Models in the order they run.")
    inputs: list[str] | None = Field(
        None,
        description="Ensemble tensors clients send (default: the first step's inputs); any "
        "other tensor a step reads must be written by an earlier step.",
    )
    outputs: list[str] | None = Field(
        None,
        description="Ensemble tensors returned to clients (default: the last step's outputs); "
        "every other tensor a step writes must be read by a later step.",
    )
    max_batch_size: int | None = Field(
        None, ge=0, description="Default: the smallest of the composing models'."
    )
    fuse: Literal["auto", "none"] | list[list[str]] = Field(
        "auto",
        description="auto: each run of adjacent Python-backend steps on the same instance kind "
        "becomes one Python model (one process, no hop between steps); none: one Triton model "
        "per step; or explicit groups of adjacent step names.",
    )
    serving: ServingOptions | None = Field(
        None,
        description="max_batch_size, dynamic_batching and instance_groups of the fused models "
        "(default: derived from the fused steps).",
    )
    log: PredictionLog | None = Field(
        None,
        description="Log every prediction from the model that answers "
        "(the fused model, or an unfused ensemble's last step).",
    )
    warmup: dict[str, Path] = Field(
        default_factory=dict,
        description="Sample input per ensemble input, a file relative to the spec (BYTES: the "
        "file's bytes, e.g. a PNG; numbers: a .npy of one row): Triton runs it through the "
        "pipeline's first model at load, so the first request is as fast as the next.",
    )
    response_cache: bool = Field(
        False,
        description="Answer repeated requests from Triton's response cache (serve starts it); "
        "refused for pipelines whose answer can change for the same input (feature lookups, "
        "prediction logs).",
    )

    def step_refs(self) -> list[StepRef]:
        return [StepRef(model=s) if isinstance(s, str) else s for s in self.steps]


class PipelineSpec(_Strict):
    stages: dict[str, Stage] = Field(default_factory=dict, description="Python stages by name.")
    models: dict[str, ScoringModel] = Field(default_factory=dict, description="Scoring models.")
    ensembles: dict[str, Ensemble] = Field(default_factory=dict, description="Ensembles by name.")
    features: dict[str, FeatureLookup] = Field(
        default_factory=dict, description="Feature-store lookup steps by name (become stages)."
    )
    registry_uri: str | None = Field(
        None,
        description="MLflow tracking/registry URI for registry: models (default: "
        "sqlite:///mlflow.db beside the spec); relative sqlite paths are relative to the spec.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineSpec:
        seen: dict[str, str] = {}
        for section in ("stages", "features", "models", "ensembles"):
            for name in getattr(self, section):
                if name in seen:
                    raise ValueError(f"name '{name}' is used in both {seen[name]} and {section}")
                if not name.replace("_", "").replace("-", "").isalnum():
                    raise ValueError(f"{section}.{name}: use letters, digits, '_' and '-'")
                seen[name] = section
        for name, ensemble in self.ensembles.items():
            for i, step in enumerate(ensemble.step_refs()):
                if step.model not in seen:
                    raise ValueError(
                        f"ensembles.{name}.steps[{i}]: '{step.model}' is not defined"
                        + did_you_mean(step.model, seen)
                    )
        return self


def shadowed_models(spec: PipelineSpec, ensemble: str | None = None) -> dict[str, Shadow]:
    """Scoring models with a ``shadow:`` (in ``ensemble``'s steps when given): a pipeline whose
    answers must not be cached or replayed without its challenger scoring them too."""
    names = None
    if ensemble is not None:
        names = {r.model for r in spec.ensembles[ensemble].step_refs()}
    return {
        n: m.shadow
        for n, m in spec.models.items()
        if m.shadow is not None and (names is None or n in names)
    }


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item not in ("StepRef", "str"):
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _problem(path: Path, loc: tuple[int | str, ...], message: str) -> str:
    """``file: field: what``; a whole-spec check's message already names its field, so
    pydantic's ``(top level): Value error,`` prefix is dropped."""
    message = message.removeprefix("Value error, ")
    where = _location(loc)
    return f"{path}: {message}" if where == "(top level)" else f"{path}: {where}: {message}"


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a pipeline spec; :class:`SpecError` names the file and each bad field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with stages, models and ensembles")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        lines = [_problem(path, e["loc"], e["msg"]) for e in exc.errors()]
        raise SpecError("\n".join(dict.fromkeys(lines))) from None
