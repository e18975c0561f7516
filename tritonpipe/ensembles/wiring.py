"""Build-time ensemble wiring rules: a tensor becomes an ensemble input only when the spec says
so, and every tensor a step writes is read later or returned. Triton refuses the rest ("ensemble
tensor 'x' is unused"); here the error names the ensemble, step and tensor, and a likely fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tritonpipe.errors import SpecError
from tritonpipe.tensors import TensorSpec


def _guess(tensor: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(tensor, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def undeclared_input(
    ensemble: str,
    step: int,
    model: str,
    model_input: str,
    tensor: str,
    *,
    declared: list[str] | None,
    written: dict[str, str],
) -> SpecError:
    """A step reads ``tensor`` that no earlier step writes and that is not an ensemble input.
    ``written`` maps tensors earlier steps write to "step N 'model'"."""
    if declared is None:
        where = "the ensemble's inputs default to the first step's inputs"
    else:
        where = f"the ensemble's inputs are {declared}"
    close = difflib.get_close_matches(tensor, list(written), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}' (written by {written[close[0]]})?" if close else "."
    source = close[0] if close else "<tensor>"
    return SpecError(
        f"ensembles.{ensemble}.steps[{step}]: model '{model}' input '{model_input}' reads "
        f"tensor '{tensor}', which no earlier step writes and {where}{hint} Map it with "
        f"`inputs: {{{model_input}: {source}}}` on the step, or add '{tensor}' to the "
        "ensemble's `inputs:` if clients send it"
    )


def check_declared_inputs(
    ensemble: str, declared: list[str], read: set[str], written: dict[str, str]
) -> None:
    """Every declared ensemble input is read by some step and written by none."""
    both = [t for t in declared if t in written]
    if both:
        raise SpecError(
            f"ensembles.{ensemble}.inputs: {both} is also written by {written[both[0]]}; "
            "a tensor is either sent by clients or written by a step"
        )
    unread = [t for t in declared if t not in read]
    if unread:
        raise SpecError(
            f"ensembles.{ensemble}.inputs: no step reads {unread}"
            + _guess(unread[0], read - set(declared))
        )


def check_unread_outputs(
    ensemble: str, written: dict[str, str], read: set[str], returned: list[str]
) -> None:
    """Every tensor a step writes is read by a later step or returned to clients."""
    unused = [t for t in written if t not in read and t not in returned]
    if unused:
        lines = [f"'{t}' (written by {written[t]})" for t in unused]
        raise SpecError(
            f"ensembles.{ensemble}: {', '.join(lines)} is read by no later step and is not "
            f"returned; add it to the ensemble's `outputs:` (now {returned}), or map the "
            "model output to a tensor a later step reads (Triton refuses unused tensors)"
        )


def written_twice(ensemble: str, step: int, model: str, tensor: str, first: str) -> SpecError:
    return SpecError(
        f"ensembles.{ensemble}.steps[{step}]: model '{model}' writes tensor '{tensor}', which "
        f"{first} already writes; map one of them to another name with `outputs:` on the step"
    )


class EnsembleTensors:
    """The tensors of one ensemble as the builder walks its steps in order: which are ensemble
    inputs, which step writes which, and which are read."""

    def __init__(self, ensemble: str, declared: list[str] | None) -> None:
        self.ensemble = ensemble
        self.declared = declared
        self.specs: dict[str, TensorSpec] = {}
        self.inputs: list[TensorSpec] = []
        self.written: dict[str, str] = {}  # tensor -> "step N 'model'" that writes it
        self.read: set[str] = set()

    def step_reads(self, step: int, model: str, spec: TensorSpec, tensor: str) -> None:
        """Step ``step`` feeds model input ``spec`` from ``tensor``."""
        self.read.add(tensor)
        if tensor in self.specs:
            return
        first_step_default = self.declared is None and step == 0
        if not first_step_default and tensor not in (self.declared or ()):
            raise undeclared_input(
                self.ensemble,
                step,
                model,
                spec.name,
                tensor,
                declared=self.declared,
                written=self.written,
            )
        self.specs[tensor] = TensorSpec(name=tensor, dtype=spec.dtype, shape=spec.shape)
        self.inputs.append(self.specs[tensor])

    def step_writes(self, step: int, model: str, spec: TensorSpec, tensor: str) -> None:
        """Step ``step`` writes model output ``spec`` to ``tensor``."""
        if tensor in self.specs:
            first = self.written.get(tensor, "the ensemble input")
            raise written_twice(self.ensemble, step, model, tensor, first)
        self.specs[tensor] = TensorSpec(name=tensor, dtype=spec.dtype, shape=spec.shape)
        self.written[tensor] = f"step {step} '{model}'"

    def finish(self, returned: list[str]) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The ensemble's inputs (declared order) and outputs, once every rule holds."""
        missing = [t for t in returned if t not in self.specs]
        if missing:
            raise SpecError(f"ensembles.{self.ensemble}.outputs: no step produces {missing}")
        inputs = self.inputs
        if self.declared is not None:
            check_declared_inputs(self.ensemble, self.declared, self.read, self.written)
            inputs = sorted(inputs, key=lambda t: (self.declared or []).index(t.name))
        check_unread_outputs(self.ensemble, self.written, self.read, returned)
        return inputs, [self.specs[t] for t in returned]
