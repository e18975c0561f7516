"""JSON records given to `tritonpipe infer --record`, scored through the records contract: each
record is a JSON object holding a value per input (``{"temperature": 71.5, "sensor_type":
"pump"}``); the answer is one JSON object of outputs per record (text outputs as strings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonpipe.errors import RecordError, SpecError
from tritonpipe.records import Contract

if TYPE_CHECKING:  # the client is imported only when `infer` runs
    from tritonpipe.client import Client

RECORD_HELP = (
    'A JSON record: an object with a value per input, e.g. \'{"temperature": 71.5, '
    '"sensor_type": "pump"}\' (numbers convert to the input\'s dtype when nothing is lost, '
    "lists feed vector inputs); or @FILE holding one object, a list of objects or JSON lines. "
    "Repeat for more records; they go as one batch."
)


def read_records(items: list[str]) -> list[Any]:
    """The records the ``--record`` options hold, in order."""
    records: list[Any] = []
    for item in items:
        where = "--record"
        text = item
        if item.startswith("@"):
            path = Path(item[1:])
            where = str(path)
            try:
                text = path.read_text()
            except OSError as exc:
                raise SpecError(f"--record {item}: cannot read {path}: {exc}") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            try:  # JSON lines
                value = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError:
                raise SpecError(f"{where}: not JSON: {exc}") from None
        records.extend(value if isinstance(value, list) else [value])
    return records


def infer_records(client: Client, model: str, records: list[Any]) -> list[dict[str, Any]]:
    """Score ``records`` on ``model`` in one request; a refused record raises
    :class:`RecordError` naming it (``record 1: input 'temperature': null``) before sending."""
    info = client.model(model)
    contract = Contract.from_specs(info.inputs, info.outputs)
    converted = contract.from_records(records)
    converted.raise_refusals()
    outputs = client.infer(model, converted.inputs)
    values, failures = contract.to_records(outputs)
    if failures:
        raise RecordError(failures)
    return values
