"""Shadow scoring in the caller's process: what :class:`tritonpipe.pipeline.Pipeline`, and so the
batch and stream runners, do with a spec's ``shadow:``, as the served model does.

A pipeline run from a built repository whose ensemble answers through a model with a
``shadow.json`` logs every row it scores to the ensemble's ``log:`` sink (the champion's
version, one request id per row, the pipeline's time for the batch as ``latency_ms``) and
queues the sampled rows for the challenger (tritonpipe/shadow/runtime.py: its own thread, a
bounded queue), whose records go to the same sink tagged ``shadow: true`` with its version and
the row's request id. The caller gets the champion's outputs only. Without a ``shadow:`` an
in-process pipeline writes no prediction log (batch and stream jobs log through their own
``log:``).

Inside the pipeline's composed plan a model's tensors carry the ensemble's names where the
ensemble maps them and ``model/tensor`` otherwise (tritonpipe/pipeline/plans.py); the hook
reads them back under the model's own names, which its log and shadow configs use.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonpipe.predlog.logger import PredictionLogger
from tritonpipe.predlog.sinks import Record, make_sink
from tritonpipe.predlog.triton import PARAMETER, _records
from tritonpipe.shadow.build import SHADOW_FILE
from tritonpipe.shadow.runtime import ShadowScoring
from tritonpipe.tensors import Array


@dataclass
class _Shadowed:
    """One model of the pipeline that shadows: its names in the plan, its log and challenger."""

    names: dict[str, str]  # the model's tensor name -> the composed plan's
    outputs: list[str]  # the model's outputs (what its records log)
    config: dict[str, Any]  # its prediction-log config
    logger: PredictionLogger
    shadow: ShadowScoring


def _latest(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()),
               key=lambda p: int(p.name))  # fmt: skip


class PipelineShadows:
    """The shadowing models of one in-process pipeline; ``None`` from :meth:`find` if none."""

    def __init__(self, models: list[_Shadowed]) -> None:
        self.models = models
        # What the pipeline's runner must return beside its outputs (stripped before the caller).
        self.keep = list(
            dict.fromkeys(
                m.names[t]
                for m in models
                for t in [*m.shadow.carry, *m.outputs, *_logged(m.config)]
                if t in m.names
            )
        )

    @classmethod
    def find(cls, repository: Path, name: str, base: Path) -> PipelineShadows | None:
        """Shadowing models of ``name`` (an ensemble, or one model) in a built repository;
        ``base``: where the logs' relative paths start."""
        from tritonpipe.repository.validate import validate_repository

        models = validate_repository(repository)
        model = models[name]
        if model.is_ensemble:
            steps = [
                (s.model_name, {**dict(s.input_map), **dict(s.output_map)})
                for s in model.config.ensemble_scheduling.step
            ]
        else:
            steps = [(name, {})]
        found = []
        for step_model, outer in steps:
            config = models[step_model].config
            folder = _latest(repository / step_model)
            if not (folder / SHADOW_FILE).is_file() or PARAMETER not in config.parameters:
                continue
            predlog: dict[str, Any] = json.loads(config.parameters[PARAMETER].string_value)
            plan = json.loads((folder / "plan.json").read_text())
            own = [d["tensor"] for d in plan["inputs"] + plan["outputs"]]
            own += [d["tensor"] for s in plan["steps"] for d in s["inputs"] + s["outputs"]]
            names = {t: outer.get(t, t if not outer else f"{step_model}/{t}") for t in own}
            found.append(
                _Shadowed(
                    names=names,
                    outputs=[d["tensor"] for d in plan["outputs"]],
                    config=predlog,
                    logger=PredictionLogger(
                        make_sink(predlog["sink"], base=base),
                        to_records=functools.partial(_rows, predlog),
                        queue_size=predlog.get("queue_size", 10_000),
                    ),
                    shadow=ShadowScoring(folder, predlog, base),
                )
            )
        return cls(found) if found else None

    def after_run(
        self,
        tensors: dict[str, Array],
        rows: int,
        latency_ms: float,
        request_ids: list[str] | None = None,
    ) -> None:
        """Log one scored batch (the plan's inputs, outputs and kept tensors) under
        ``request_ids`` (random when None) and queue its sampled rows for each challenger."""
        if not rows:
            return
        now = time.time()
        ids = request_ids or [uuid.uuid4().hex for _ in range(rows)]
        for model in self.models:
            own = {t: tensors[c] for t, c in model.names.items() if c in tensors}
            model.logger.log(
                {
                    "ids": ids,
                    "timestamp": now,
                    "inputs": {t: own[t] for t in _logged(model.config)},
                    "outputs": {t: own[t] for t in model.outputs},
                    "latency_ms": latency_ms,
                }
            )
            model.shadow.submit_rows(ids, own)

    def close(self) -> None:
        """Score what the challengers have queued, then flush every log."""
        for model in self.models:
            model.shadow.close()
            model.logger.close()


def _logged(config: dict[str, Any]) -> list[str]:
    return [*config["entity_keys"], *filter(None, [config.get("features")])]


def _rows(config: dict[str, Any], entry: dict[str, Any]) -> list[Record]:
    """The champion's records of one scored batch: one per row, each row its own request."""
    records = _records(config, {**entry, "request_id": ""})
    for record, request_id in zip(records, entry["ids"], strict=True):
        record["request_id"], record["row"] = request_id, 0
    return records
