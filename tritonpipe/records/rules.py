"""What a pipeline's signature says about its records: one rule per input and per output, and the
reason texts every mode reports for a refused value.

Every reason starts with what it is about, then a colon, then what is wrong::

    input 'temperature': null
    input 'temperature': missing
    input 'temperature': nan is not a finite number
    input 'temperature': 'hot' is not FP32
    input 'count': 1.5 is not INT64
    input 'count': 300 is outside INT8 [-128, 127]
    input 'sensor_type': 7 is not a string
    input 'pixels': 3 values, wants FP32[4]
    input 'temperature': takes one value per row, got a list ([71.5, 72])
    input 'cat': 50 is outside [0, 49]
    input 'sensor_type': unknown category 'fan'
    id 'event_id': missing
    record: not an object (list)
    output 'alert': not UTF-8 text (b'\\xff')

Values are shown as Python literals (strings quoted, 40 characters at most); a whole float shows
as an integer (``50``, not ``50.0``), so a value reads the same from an int or a float column;
booleans show as ``true``/``false`` and non-finite floats as ``nan``/``inf``/``-inf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.backend import runtime
from tritonpipe.tensors import TensorSpec, dtype

# A value as it appears in a reason; the texts the runtime (inside Triton) checks with too.
show = runtime.show

NUMBER_KINDS = "fiub"


@dataclass(frozen=True, kw_only=True)
class InputRule:
    """How records feed one pipeline input.

    ``field`` is the record key (or column) holding the value, the input's name by default.
    ``low``/``high`` bound the value, both inclusive. ``allow_nan`` lets NaN and +/-Inf through
    (float inputs only). ``categories`` lists the strings a BYTES input takes.
    """

    spec: TensorSpec
    field: str = ""
    low: float | None = None
    high: float | None = None
    allow_nan: bool = False
    categories: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return self.field or self.spec.name

    @property
    def numpy(self) -> np.dtype[Any]:
        return np.dtype(dtype(self.spec.dtype).numpy)

    @property
    def text(self) -> bool:
        return self.spec.dtype == "BYTES"

    @property
    def width(self) -> int:
        """Values per record: 1 for a scalar ([1] or []), the product of fixed dims, -1 if any
        dim is dynamic."""
        if any(d == -1 for d in self.spec.shape):
            return -1
        return int(np.prod(self.spec.shape)) if self.spec.shape else 1

    @property
    def scalar(self) -> bool:
        return self.spec.shape in ((), (1,))


@dataclass(frozen=True, kw_only=True)
class OutputRule:
    """How one pipeline output becomes a record value. A BYTES output is UTF-8 text (a ``str``)
    unless ``binary`` is set, then it stays ``bytes``."""

    spec: TensorSpec
    binary: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        """``text``, ``binary``, ``bool``, ``int`` or ``float``."""
        if self.spec.dtype == "BYTES":
            return "binary" if self.binary else "text"
        np_dtype = np.dtype(dtype(self.spec.dtype).numpy)
        return {"b": "bool", "i": "int", "u": "int"}.get(np_dtype.kind, "float")

    @property
    def scalar(self) -> bool:
        return self.spec.shape in ((), (1,))


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """One refused record: its position in what was given, the input (or output, or id field)
    it failed on, and the reason text (which names that input)."""

    row: int
    input: str
    reason: str


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


class Reasons:
    """The reason texts, in one place so every mode says the same."""

    @staticmethod
    def null(name: str) -> str:
        return f"input '{name}': null"

    @staticmethod
    def missing(name: str) -> str:
        return f"input '{name}': missing"

    not_finite = staticmethod(runtime.not_finite)

    @staticmethod
    def wrong_type(name: str, value: Any, want: str) -> str:
        return f"input '{name}': {show(value)} is not {want}"

    @staticmethod
    def outside_dtype(name: str, value: Any, want: str, low: Any, high: Any) -> str:
        return f"input '{name}': {show(value)} is outside {want} [{low}, {high}]"

    @staticmethod
    def list_for_scalar(name: str, value: Any) -> str:
        """A list (or array) where the input takes a single value per row (dims [1] or [])."""
        return f"input '{name}': takes one value per row, got a list ({show(value)})"

    @staticmethod
    def wrong_length(name: str, got: int, spec: TensorSpec) -> str:
        return f"input '{name}': {got} values, wants {spec.describe()}"

    outside = staticmethod(runtime.outside)
    unknown_category = staticmethod(runtime.unknown_category)

    @staticmethod
    def missing_id(field: str) -> str:
        return f"id '{field}': missing"

    @staticmethod
    def not_object(value: Any) -> str:
        return f"record: not an object ({type_name(value)})"

    @staticmethod
    def not_text(name: str, value: Any) -> str:
        return f"output '{name}': not UTF-8 text ({show(value)})"
