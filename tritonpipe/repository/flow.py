"""The ensemble rules Triton's loader enforces on the graph as a whole (Triton 2.51,
``ValidateEnsembleSchedulingConfig`` and ``ValidateEnsembleConfig``): fields an ensemble may not
set, steps with empty maps, inputs no step reads, tensors nobody uses, tensors written twice, and
steps fed from different decoupled models. Edge-by-edge checks live in
:mod:`tritonpipe.repository.wiring`."""

from __future__ import annotations

from pathlib import Path

from tritonpipe.repository.validate import LoadedModel


def check_fields(ensemble: LoadedModel, problems: list[str]) -> None:
    """Fields Triton refuses on an ensemble, and steps that leave a required field empty."""
    config, path = ensemble.config, ensemble.config_path
    present = [f for f in ("instance_group", "model_warmup") if len(getattr(config, f))]
    present += ["optimization"] if config.HasField("optimization") else []
    for field in present:
        problems.append(f"{path}: {field}: an ensemble may not set it (Triton refuses it)")
    for i, step in enumerate(config.ensemble_scheduling.step):
        where = f"{path}: ensemble_scheduling.step[{i}]"
        if not step.model_name:
            problems.append(f"{where}.model_name: empty")
        if not step.input_map:
            problems.append(f"{where}.input_map: empty (every step reads at least one tensor)")
        if not step.output_map:
            problems.append(f"{where}.output_map: empty (every step writes at least one tensor)")


def check_flow(ensemble: LoadedModel, problems: list[str]) -> None:
    """Every ensemble input is read, and every tensor a step writes is read by a step or
    returned (tensors written twice are reported by the edge checks)."""
    config, path, name = ensemble.config, ensemble.config_path, ensemble.name
    steps = config.ensemble_scheduling.step
    read_by: dict[str, list[int]] = {}
    written_by: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        for tensor in step.input_map.values():
            read_by.setdefault(tensor, []).append(i)
        for tensor in step.output_map.values():
            written_by.setdefault(tensor, []).append(i)
    returned = {t.name for t in config.output}
    for t in config.input:
        if t.name not in read_by:
            problems.append(
                f"{path}: input '{t.name}': no step reads this ensemble input "
                f"(Triton: ensemble input '{t.name}' is not used)"
            )
    for tensor, writers in written_by.items():
        if tensor not in read_by and tensor not in returned:
            step = steps[writers[0]]
            model_out = next(k for k, v in step.output_map.items() if v == tensor)
            problems.append(
                f"{path}: ensemble_scheduling.step[{writers[0]}].output_map: tensor '{tensor}' "
                f"(model '{step.model_name}' output '{model_out}') is read by no step and is "
                f"not an ensemble output; add it to the ensemble's outputs or drop the mapping "
                f"(Triton: ensemble tensor '{tensor}' is unused in ensemble '{name}')"
            )


def check_decoupled(ensemble: LoadedModel, decoupled: dict[str, bool], problems: list[str]) -> None:
    """A step may not read tensors that come from different decoupled models (Triton cannot
    pair their responses). ``decoupled`` maps each step's model name to its transaction policy."""
    config, path = ensemble.config, ensemble.config_path
    label: dict[str, int] = {t.name: 0 for t in config.input}
    steps = list(enumerate(config.ensemble_scheduling.step))
    fresh = 0
    progress = True
    while steps and progress:  # steps in data order; a step whose inputs never arrive stays
        progress = False
        for item in list(steps):
            i, step = item
            sources = [label.get(t) for t in step.input_map.values()]
            if any(s is None for s in sources):
                continue
            steps.remove(item)
            progress = True
            if len(set(sources)) > 1:
                problems.append(
                    f"{_where(path, i)}: model '{step.model_name}' reads tensors that come from "
                    "different decoupled models (Triton refuses this)"
                )
            mark = sources[0] if sources else 0
            if decoupled.get(step.model_name, False):
                fresh += 1
                mark = fresh
            for tensor in step.output_map.values():
                label.setdefault(tensor, mark if mark is not None else 0)


def _where(path: Path, step: int) -> str:
    return f"{path}: ensemble_scheduling.step[{step}]"
