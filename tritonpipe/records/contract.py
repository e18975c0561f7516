"""The contract: a pipeline's input and output rules, and the conversions every mode calls.

Build one with :meth:`Contract.from_specs` (tensor specs plus options), :meth:`Contract.from_plan`
(a compiled ensemble plan: options from its stages' tensors and its models' export manifests),
then:

- :meth:`Contract.from_records`: JSON/msgpack records (dicts) -> inputs + refusals
- :meth:`Contract.from_columns`: a pandas DataFrame, pyarrow Table or dict of columns -> the same
- :meth:`Contract.check_arrays`: arrays by input name (typed arrays, 1-D columns) -> the same
- :meth:`Contract.to_records` / :meth:`Contract.to_columns`: outputs -> record values

A record gets at most one refusal: the first of (not an object, id, then each input in the
signature's order) that fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonpipe.errors import RecordError
from tritonpipe.records import columns as cols
from tritonpipe.records import outputs as outs
from tritonpipe.records.rules import InputRule, OutputRule, Reasons, Refusal
from tritonpipe.records.values import MISSING, Bad, scalar_column, vector_column
from tritonpipe.tensors import Array, TensorSpec

if TYPE_CHECKING:
    from tritonpipe.ensembles.plan import EnsemblePlan


@dataclass(kw_only=True)
class Converted:
    """Inputs for every given record (a refused record's rows hold zeros or ``b""``) and the
    refusals, one per refused record, in row order."""

    inputs: dict[str, Array]
    refusals: list[Refusal]
    count: int
    ids: list[Any] | None = None
    _mask: Array | None = field(default=None, repr=False)

    @property
    def accepted(self) -> Array:
        """Boolean mask of the records that were not refused."""
        if self._mask is None:
            mask = np.ones(self.count, dtype=bool)
            mask[[r.row for r in self.refusals]] = False
            self._mask = mask
        return self._mask

    def accepted_inputs(self) -> dict[str, Array]:
        """The inputs of the accepted records only."""
        if not self.refusals:
            return self.inputs
        mask = self.accepted
        return {name: array[mask] for name, array in self.inputs.items()}

    def raise_refusals(self, what: str = "record") -> None:
        """Raise :class:`RecordError` naming every refusal (``record 3: input 'x': null``)."""
        if self.refusals:
            raise RecordError(self.refusals, what=what)


class Contract:
    """Records <-> tensors for one pipeline signature."""

    def __init__(self, inputs: Sequence[InputRule], outputs: Sequence[OutputRule]) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    def __repr__(self) -> str:
        names = [r.name for r in self.inputs], [r.name for r in self.outputs]
        return f"Contract(inputs={names[0]}, outputs={names[1]})"

    def input(self, name: str) -> InputRule:
        return next(r for r in self.inputs if r.name == name)

    def output(self, name: str) -> OutputRule:
        return next(r for r in self.outputs if r.name == name)

    @classmethod
    def from_specs(
        cls,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        *,
        ranges: Mapping[str, Sequence[float]] | None = None,
        value_ranges: Mapping[str, Sequence[int]] | None = None,
        allow_nan: Iterable[str] = (),
        categories: Mapping[str, Sequence[str]] | None = None,
        binary: Iterable[str] = (),
        fields: Mapping[str, str] | None = None,
    ) -> Contract:
        """Rules from tensor specs. ``ranges``: input -> [low, high], both inclusive (the spec's
        form); ``value_ranges``: input -> [low, high) (an export manifest's form, integers);
        ``fields``: input -> record key or column that feeds it."""
        ranges = dict(ranges or {})
        for name, (low, high) in (value_ranges or {}).items():
            ranges.setdefault(name, [low, high - 1])
        nan_ok = set(allow_nan)
        cats = dict(categories or {})
        fields = dict(fields or {})
        binary_set = set(binary)
        rules = [
            InputRule(
                spec=spec,
                field=fields.get(spec.name, ""),
                low=_num(ranges[spec.name][0]) if spec.name in ranges else None,
                high=_num(ranges[spec.name][1]) if spec.name in ranges else None,
                allow_nan=spec.name in nan_ok,
                categories=tuple(cats[spec.name]) if spec.name in cats else None,
            )
            for spec in inputs
        ]
        return cls(rules, [OutputRule(spec=s, binary=s.name in binary_set) for s in outputs])

    @classmethod
    def from_plan(cls, plan: EnsemblePlan, fields: Mapping[str, str] | None = None) -> Contract:
        """Rules for a compiled ensemble: each pipeline input takes the options its consumers
        declare (a stage tensor's ``range``/``allow_nan``/``categories``, a model's manifest
        ``value_ranges``; the narrowest range wins, NaN only if every consumer allows it) and
        each output its producer's ``binary`` flag."""
        from tritonpipe.records.plan import contract_options

        opts = contract_options(plan.steps, plan.inputs, plan.outputs)
        return cls.from_specs(plan.inputs, plan.outputs, fields=fields, **opts)

    @classmethod
    def from_plan_json(
        cls, plan: Mapping[str, Any], fields: Mapping[str, str] | None = None
    ) -> Contract:
        """Rules from a runtime plan (``plan.json``, what ``tritonpipe build`` writes into a
        fused model and the in-process ``Pipeline`` runs): its ``inputs``/``outputs``
        declarations and its ``contract`` options (absent in plans built before them)."""

        def specs(key: str) -> list[TensorSpec]:
            return [
                TensorSpec(
                    name=d.get("tensor", d["name"]), dtype=d["dtype"], shape=tuple(d["shape"])
                )
                for d in plan.get(key, [])
            ]

        opts = dict(plan.get("contract", {}))
        return cls.from_specs(specs("inputs"), specs("outputs"), fields=fields, **opts)

    def with_fields(self, fields: Mapping[str, str]) -> Contract:
        """The same rules reading input ``name`` from record key / column ``fields[name]``."""
        from dataclasses import replace

        rules = [replace(r, field=fields.get(r.name, r.field)) for r in self.inputs]
        return Contract(rules, self.outputs)

    # records -> inputs

    def from_records(self, records: Sequence[Any], id_field: str | None = None) -> Converted:
        """Records (dicts of JSON/msgpack values) -> inputs. A record that is not a dict is
        refused (``record: not an object (list)``); with ``id_field``, one without an id is
        refused (``id 'event_id': missing``)."""
        n = len(records)
        early: Bad = {}
        kinds = set(map(type, records))
        if not kinds <= {dict}:
            for pos, record in enumerate(records):
                if not isinstance(record, Mapping):
                    early[pos] = Reasons.not_object(record)
        ids: list[Any] | None = None
        if id_field is not None:
            ids = [r.get(id_field) if isinstance(r, Mapping) else None for r in records]
            for pos in [i for i, v in enumerate(ids) if v is None or v == ""]:
                early.setdefault(pos, Reasons.missing_id(id_field))
        values: dict[str, list[Any]] = {}
        for rule in self.inputs:
            key = rule.key
            if early:
                values[rule.name] = [
                    r.get(key, MISSING) if isinstance(r, Mapping) else None for r in records
                ]
            else:
                values[rule.name] = [r.get(key, MISSING) for r in records]
        converted = self._convert(n, lambda rule: values[rule.name], early)
        converted.ids = ids
        return converted

    def from_columns(self, data: Any, id_field: str | None = None) -> Converted:
        """Columns (pandas DataFrame, pyarrow Table/RecordBatch, or a dict of sequences or numpy
        arrays) -> inputs. A missing column raises :class:`RecordError`, naming the columns
        there are; a null id refuses its row."""
        names = set(cols.column_names(data))
        n = cols.row_count(data)
        missing = [r for r in self.inputs if r.key not in names]
        if missing or (id_field is not None and id_field not in names):
            want = [f"'{r.key}' (input '{r.name}', {r.spec.describe()})" for r in missing]
            if id_field is not None and id_field not in names:
                want.append(f"'{id_field}' (id)")
            raise RecordError(
                [],
                what="column",
                message=f"no column {', '.join(want)}; columns: {', '.join(sorted(names))}",
            )
        early: Bad = {}
        ids: list[Any] | None = None
        if id_field is not None:
            raw = cols.column(data, id_field)
            ids = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
            for pos in [i for i, v in enumerate(ids) if v is None or v == ""]:
                early[pos] = Reasons.missing_id(id_field)
        converted = self._convert(n, lambda rule: cols.column(data, rule.key), early)
        converted.ids = ids
        return converted

    def check_arrays(self, arrays: Mapping[str, Any]) -> Converted:
        """Arrays by input name (numpy arrays of any number dtype, 1-D or with the input's
        shape; lists) -> inputs by the same rules. A missing input raises :class:`RecordError`."""
        missing = [r.name for r in self.inputs if r.name not in arrays]
        if missing:
            raise RecordError(
                [], what="input", message=f"missing input {', '.join(repr(m) for m in missing)}"
            )
        lengths = {
            len(
                np.asarray(arrays[r.name], dtype=object)
                if isinstance(arrays[r.name], list)
                else arrays[r.name]
            )
            for r in self.inputs
        }
        if len(lengths) > 1:
            raise RecordError(
                [],
                what="input",
                message=f"inputs hold different numbers of rows: {sorted(lengths)}",
            )
        n = lengths.pop() if lengths else 0
        return self._convert(n, lambda rule: _array_values(arrays[rule.name], rule), {})

    def _convert(self, n: int, get: Any, early: Bad) -> Converted:
        bad: Bad = dict(early)
        inputs: dict[str, Array] = {}
        for rule in self.inputs:
            values = get(rule)
            found: Bad = {}
            if rule.scalar:
                array = scalar_column(rule, values, found)
                array = array.reshape(n) if rule.spec.shape == () else array.reshape(n, 1)
            else:
                array = vector_column(rule, values, found)
            for row in sorted(found):
                bad.setdefault(row, found[row])
            inputs[rule.name] = array
        if bad:
            rows = np.fromiter(bad, dtype=np.int64)
            for rule in self.inputs:
                inputs[rule.name][rows] = b"" if rule.text else 0
        refusals = [
            Refusal(row=row, input=_about(bad[row]), reason=bad[row]) for row in sorted(bad)
        ]
        return Converted(inputs=inputs, refusals=refusals, count=n)

    # outputs -> records

    def to_records(
        self, outputs: Mapping[str, Array]
    ) -> tuple[list[dict[str, Any]], list[Refusal]]:
        """One dict per row (``str`` for text, ``bytes`` for binary, Python numbers, lists for
        vectors) and a refusal for each row whose outputs cannot be encoded (its value is None)."""
        return outs.to_records(self.outputs, outputs)

    def to_columns(self, outputs: Mapping[str, Array]) -> tuple[dict[str, Array], list[Refusal]]:
        """Each output as a column of record values (see :func:`outputs.column_values`)."""
        failures: dict[int, str] = {}
        failed_on: dict[int, str] = {}
        result: dict[str, Array] = {}
        for rule in self.outputs:
            before = set(failures)
            result[rule.name] = outs.column_values(rule, outputs[rule.name], failures)
            for row in set(failures) - before:
                failed_on[row] = rule.name
        return result, [
            Refusal(row=r, input=failed_on[r], reason=failures[r]) for r in sorted(failures)
        ]


def _array_values(values: Any, rule: InputRule) -> Any:
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "fiub":
            if rule.scalar:
                # more than one value a row: the rows, each refused as a record's list is
                flat = values.size == len(values)
                return values.reshape(len(values)) if flat else values.reshape(len(values), -1)
            return values.reshape(len(values), -1) if values.ndim > 1 else values
        if rule.scalar or values.ndim == 1:
            return (
                values.reshape(len(values)).tolist() if values.size == len(values) else list(values)
            )
        return list(values)
    return list(values)


def _about(reason: str) -> str:
    """The input (or id field) a reason is about: ``input 'x': ...`` -> ``x``."""
    head = reason.split(":", 1)[0]
    return head.split("'", 2)[1] if "'" in head else ""


def _num(value: Any) -> float:
    return float(value)
