"""Records <-> pipeline tensors: one data contract for every mode.

Records (JSON/msgpack dicts, DataFrame/Arrow columns, CSV cells) convert to the dtype and shape
the pipeline declares when nothing is lost beyond the declared precision; every bad value gets
one verdict with one reason text (see :mod:`tritonpipe.records.rules`). Outputs convert back to
``str`` (text BYTES), ``bytes`` (binary BYTES), Python numbers and lists, and
:mod:`tritonpipe.records.schema` gives the type each sink stores them as.

Imports numpy and the standard library only (pandas, pyarrow and pyspark load when used).
"""

from tritonpipe.records.contract import Contract, Converted
from tritonpipe.records.rules import InputRule, OutputRule, Reasons, Refusal

__all__ = ["Contract", "Converted", "InputRule", "OutputRule", "Reasons", "Refusal"]
