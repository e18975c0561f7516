"""A unit's columns to pipeline input arrays through the records contract, and the rows that
cannot be converted (:mod:`tritonpipe.records`: the same rules and reasons as every mode).

A scalar column feeds an input of shape [1]; a column of lists, arrays or CSV cells ("1,2,3")
feeds a vector input. Each bad row is reported once, with its column and the contract's reason
(``input 'amount': null``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch.config import JobConfig
from tritonpipe.errors import BatchError, RecordError, TritonPipeError
from tritonpipe.records import Contract, Reasons
from tritonpipe.tensors import Array, dtype


@dataclass(frozen=True, kw_only=True)
class BadRow:
    position: int  # in the unit's frame
    column: str
    reason: str


def job_contract(config: JobConfig, contract: Contract, *, from_spec: bool = False) -> Contract:
    """The engine's contract reading each input from the job's column for it; with
    ``from_spec`` (an engine that cannot know them: a Triton server's model config does not
    carry them), the options (ranges, categories, binary outputs) the job's pipeline spec
    declares."""
    rules = contract
    if from_spec:
        try:
            from tritonpipe.pipeline import plans

            if not str(config.pipeline).endswith((".yaml", ".yml")):
                raise TritonPipeError("not a spec")
            options = plans.from_spec(Path(config.pipeline), config.model).get("contract", {})
            rules = Contract.from_specs(
                [r.spec for r in contract.inputs], [r.spec for r in contract.outputs], **options
            )
        except (TritonPipeError, OSError):
            rules = contract
    return rules.with_fields({r.name: config.column_for(r.name) for r in rules.inputs})


def to_inputs(
    frame: Any,
    contract: Contract,
    config: JobConfig,
    file: str,
    given: dict[str, Array] | None = None,
    table: Any = None,
) -> tuple[dict[str, Array], list[BadRow]]:
    """Input arrays for every row (bad rows hold zeros) and the bad rows, one per row. Inputs in
    ``given`` (a transform's outputs) are taken as they are, cast to the input's dtype. ``table``
    (the unit as Arrow, when read from Parquet) keeps nulls apart from NaN."""
    given = given or {}
    arrays: dict[str, Array] = {}
    for rule in contract.inputs:
        if rule.name in given:
            array = given[rule.name].reshape(len(frame), -1)
            if rule.spec.shape[-1] != -1 and array.shape[1] != rule.spec.shape[-1]:
                raise BatchError(
                    f"transform output '{rule.name}' has {array.shape[1]} values per row, "
                    f"pipeline input wants {rule.spec.describe()}"
                )
            arrays[rule.name] = array.astype(dtype(rule.spec.dtype).numpy)
    rest = [r for r in contract.inputs if r.name not in given]
    for rule in rest:
        if len(rule.spec.shape) != 1:
            raise BatchError(
                f"input {rule.name} {rule.spec.describe()}: batch jobs take 1-D inputs"
            )
    source = (
        table if table is not None and all(r.key in table.column_names for r in rest) else frame
    )
    try:
        converted = Contract(rest, []).from_columns(source)
    except RecordError:
        missing = next(r for r in rest if r.key not in frame.columns)
        have = ", ".join(str(c) for c in frame.columns if c != "_row")
        raise BatchError(
            f"{file}: no column '{missing.key}' for pipeline input {missing.name} "
            f"({missing.spec.describe()}); columns: {have}"
        ) from None
    arrays.update(converted.inputs)
    for name in config.key:
        if name not in frame.columns:
            raise BatchError(f"{file}: no key column '{name}'")
    bad = _missing_keys(frame, config.key) + [
        BadRow(position=r.row, column=contract.input(r.input).key, reason=r.reason)
        for r in converted.refusals
    ]
    return {r.name: arrays[r.name] for r in contract.inputs}, bad


def _missing_keys(frame: Any, key: list[str]) -> list[BadRow]:
    """Rows without an id: a null (or NaN) or empty value in the key's first column, the
    contract's ``id 'x': missing``; a row is written under its id, so one without cannot be
    written once. The key's other columns are copied as they are (a feature or
    ``entity_found`` beside the id may be null)."""
    import pandas as pd

    if not key:
        return []
    name = key[0]
    values = frame[name]
    empty = values.isna()
    if values.dtype == object:
        empty |= values.map(lambda v: isinstance(v, str | bytes) and not v).astype(bool)
    return [
        BadRow(position=int(p), column=name, reason=Reasons.missing_id(name))
        for p in np.flatnonzero(pd.Series(empty).to_numpy(dtype=bool))
    ]
