"""`perf sweep --apply`: write a candidate's serving options back into the pipeline spec,
keeping its comments, key order and quoting (ruamel.yaml's round trip), then validate it.

Where the options go: a fused ensemble's model (named like the ensemble, or a fused group of
it) takes them under ``ensembles.<name>.serving``; a stage or scoring model under its own entry."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tritonpipe.capacity.candidates import Settings
from tritonpipe.ensembles.spec import load_spec
from tritonpipe.errors import SpecError


def spec_entry(spec_path: Path, model: str) -> tuple[str, str]:
    """(section, name) of the spec entry that configures Triton model ``model``."""
    spec = load_spec(spec_path)
    for section in ("stages", "models"):
        if model in getattr(spec, section):
            return section, model
    for name in spec.ensembles:
        if model == name or model.startswith(f"{name}_"):
            return "ensembles", name
    known = [*spec.stages, *spec.models, *spec.ensembles]
    raise SpecError(
        f"{spec_path}: model '{model}' is not in the spec (stages, models and ensembles: "
        f"{', '.join(known)})"
    )


def _flow(items: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    for item in items:
        if isinstance(item, CommentedMap):
            item.fa.set_flow_style()
    return seq


def _set_options(entry: Any, knobs: dict[str, int]) -> None:
    """Set the knobs on one spec entry (a stage, a model, or an ensemble's serving block),
    editing existing keys in place so their comments and position stay."""
    from ruamel.yaml.comments import CommentedMap

    if "max_batch_size" in knobs:
        entry["max_batch_size"] = knobs["max_batch_size"]
    if "max_queue_delay_us" in knobs or "preferred_batch_size" in knobs:
        batching = entry.get("dynamic_batching")
        if not isinstance(batching, CommentedMap):
            batching = CommentedMap()
            batching.fa.set_flow_style()
            entry["dynamic_batching"] = batching
        if "max_queue_delay_us" in knobs:
            batching["max_queue_delay_microseconds"] = knobs["max_queue_delay_us"]
        if "preferred_batch_size" in knobs:
            preferred = knobs["preferred_batch_size"]
            if preferred:
                batching["preferred_batch_size"] = _flow([preferred])
            elif "preferred_batch_size" in batching:
                del batching["preferred_batch_size"]
    if "count" in knobs:
        groups = entry.get("instance_groups")
        if groups:
            groups[0]["count"] = knobs["count"]
        else:
            entry["instance_groups"] = _flow([CommentedMap(count=knobs["count"], kind="cpu")])


def apply_settings(spec_path: Path, settings: Settings) -> str:
    """Write ``settings`` (Triton model -> knobs) into the spec file; returns the new text.
    The file is only replaced when the edited spec still validates."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    yaml.width = 100
    # Block sequences indented under their key ("inputs:\n  - {...}"), as the examples write them.
    yaml.indent(mapping=2, sequence=4, offset=2)
    original = spec_path.read_text()
    data = yaml.load(original)
    for model, knobs in settings.items():
        section, name = spec_entry(spec_path, model)
        entry = data[section][name]
        if section == "ensembles":
            if not isinstance(entry.get("serving"), CommentedMap):
                entry["serving"] = CommentedMap()
            entry = entry["serving"]
        _set_options(entry, knobs)
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    staged = spec_path.with_name(f".{spec_path.name}.apply")
    staged.write_text(text)
    try:
        load_spec(staged)
    except SpecError as exc:
        raise SpecError(f"the winning options do not make a valid spec: {exc}") from None
    finally:
        staged.unlink()
    spec_path.write_text(text)
    return text
