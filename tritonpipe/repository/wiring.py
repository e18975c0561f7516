"""Ensemble checks the protobuf cannot make: every edge produced, typed and shaped alike, no
cycles, and no batch larger than a composing model takes. Together with
:mod:`tritonpipe.repository.flow` these are the rules Triton's ensemble loader enforces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.repository.flow import check_decoupled, check_fields, check_flow
from tritonpipe.repository.validate import LoadedModel
from tritonpipe.tensors import shapes_compatible


@dataclass(frozen=True)
class _End:
    """One end of an ensemble edge: who holds the tensor and what it is."""

    who: str  # "ensemble 'e' input 'x'" or "model 'm' output 'y'"
    data_type: int
    dims: tuple[int, ...]
    batching: bool = False  # its model has max_batch_size > 0: a batch dim leads its full shape

    @property
    def full_dims(self) -> tuple[int, ...]:
        return (-1, *self.dims) if self.batching else self.dims

    def describe(self) -> str:
        name = pb.DataType.Name(self.data_type).removeprefix("TYPE_").replace("STRING", "BYTES")
        return f"{name}[{','.join(map(str, self.dims))}]"


def _tensor_map(tensors: Any) -> dict[str, Any]:
    return {t.name: t for t in tensors}


def _producers(
    ensemble: LoadedModel, models: dict[str, LoadedModel], problems: list[str]
) -> tuple[dict[str, _End], dict[str, int]]:
    """Ensemble tensor -> what produces it, and which step produces it (-1 for an input)."""
    path = ensemble.config_path
    produced: dict[str, _End] = {}
    by_step: dict[str, int] = {}
    for t in ensemble.config.input:
        produced[t.name] = _End(
            f"ensemble '{ensemble.name}' input '{t.name}'",
            t.data_type,
            tuple(t.dims),
            ensemble.config.max_batch_size > 0,
        )
        by_step[t.name] = -1
    for i, step in enumerate(ensemble.config.ensemble_scheduling.step):
        where = f"{path}: ensemble_scheduling.step[{i}]"
        target = models.get(step.model_name)
        if target is None:
            problems.append(
                f"{where}.model_name: model '{step.model_name}' is not in the repository"
            )
            continue
        outputs = _tensor_map(target.config.output)
        for model_out, tensor in step.output_map.items():
            out = outputs.get(model_out)
            if out is None:
                problems.append(
                    f"{where}.output_map: model '{step.model_name}' has no output '{model_out}'"
                )
                continue
            if tensor in produced:
                problems.append(
                    f"{where}.output_map: tensor '{tensor}' is already produced by "
                    f"{produced[tensor].who}"
                )
                continue
            produced[tensor] = _End(
                f"model '{step.model_name}' output '{model_out}'",
                out.data_type,
                tuple(out.dims),
                target.config.max_batch_size > 0,
            )
            by_step[tensor] = i
    return produced, by_step


def _edge(
    consumer: _End, tensor: str, producer: _End | None, where: str, problems: list[str]
) -> None:
    if producer is None:
        problems.append(
            f"{where}: tensor '{tensor}' for {consumer.who} is produced by nothing "
            "(neither an ensemble input nor an earlier step's output)"
        )
    # Like Triton: shapes agree as configured, or once each side's batch dim is put in front
    # (a non-batching model's [-1, 4] meets a batching model's [4]).
    elif producer.data_type != consumer.data_type or not (
        shapes_compatible(producer.dims, consumer.dims)
        or shapes_compatible(producer.full_dims, consumer.full_dims)
    ):
        problems.append(
            f"{where}: {producer.who} is {producer.describe()} but {consumer.who} "
            f"wants {consumer.describe()} (tensor '{tensor}')"
        )


def _check_cycles(name: str, deps: dict[int, set[int]], where: str, problems: list[str]) -> None:
    state: dict[int, int] = {}  # 1 visiting, 2 done

    def visit(node: int) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2:
            return False
        state[node] = 1
        found = any(visit(d) for d in deps.get(node, ()))
        state[node] = 2
        return found

    if any(visit(n) for n in deps):
        problems.append(f"{where}: ensemble '{name}' steps form a cycle")


def check_ensemble(
    ensemble: LoadedModel, models: dict[str, LoadedModel], problems: list[str]
) -> None:
    """Append every wiring problem of ``ensemble`` to ``problems``."""
    path = ensemble.config_path
    check_fields(ensemble, problems)
    check_flow(ensemble, problems)
    produced, by_step = _producers(ensemble, models, problems)
    deps: dict[int, set[int]] = {}
    for i, step in enumerate(ensemble.config.ensemble_scheduling.step):
        target = models.get(step.model_name)
        if target is None:
            continue
        where = f"{path}: ensemble_scheduling.step[{i}]"
        inputs = _tensor_map(target.config.input)
        for model_in, tensor in step.input_map.items():
            spec = inputs.get(model_in)
            if spec is None:
                problems.append(
                    f"{where}.input_map: model '{step.model_name}' has no input '{model_in}'"
                )
                continue
            consumer = _End(
                f"model '{step.model_name}' input '{model_in}'",
                spec.data_type,
                tuple(spec.dims),
                target.config.max_batch_size > 0,
            )
            _edge(consumer, tensor, produced.get(tensor), f"{where}.input_map", problems)
            if by_step.get(tensor, -1) >= 0:
                deps.setdefault(i, set()).add(by_step[tensor])
        for name, spec in inputs.items():
            if name not in step.input_map and not spec.optional:
                problems.append(
                    f"{where}.input_map: model '{step.model_name}' input '{name}' is not fed"
                )
        _check_batch(ensemble, target, where, problems)
    for t in ensemble.config.output:
        consumer = _End(
            f"ensemble '{ensemble.name}' output '{t.name}'",
            t.data_type,
            tuple(t.dims),
            ensemble.config.max_batch_size > 0,
        )
        _edge(consumer, t.name, produced.get(t.name), f"{path}: output", problems)
    _check_cycles(ensemble.name, deps, f"{path}: ensemble_scheduling", problems)
    decoupled = {
        name: bool(m.config.model_transaction_policy.decoupled) for name, m in models.items()
    }
    check_decoupled(ensemble, decoupled, problems)


def _check_batch(
    ensemble: LoadedModel, target: LoadedModel, where: str, problems: list[str]
) -> None:
    # A batching ensemble may hold a non-batching model (Triton then compares full shapes).
    mine, theirs = ensemble.config.max_batch_size, target.config.max_batch_size
    if mine > theirs > 0:
        problems.append(
            f"{where}: ensemble max_batch_size {mine} is larger than model "
            f"'{target.name}' max_batch_size {theirs}"
        )
