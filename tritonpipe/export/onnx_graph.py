"""The user's tensor names on an exported ONNX graph, and the graph checked before parity.

The dynamo exporter names the values inside a graph after the ops that make them (``cat``,
``embedding``, ``linear``); asked to give the graph's inputs and outputs the user's names, it
writes a graph where ``cat`` is defined twice when an input is called ``cat``. So the graph is
exported with the exporter's own names, and then every inner value that holds one of the user's
names is renamed aside before the inputs and outputs take them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.errors import ExportError


def _graphs(graph: Any) -> Iterator[Any]:
    """The graph and the subgraphs of its control-flow nodes (If, Loop, Scan)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _names(graph: Any) -> set[str]:
    names: set[str] = set()
    for g in _graphs(graph):
        names.update(v.name for v in (*g.input, *g.output, *g.value_info, *g.initializer))
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
    return names


def _rename(graph: Any, old: str, new: str) -> None:
    """Rename the value ``old`` wherever it is defined or read."""
    for g in _graphs(graph):
        for v in (*g.input, *g.output, *g.value_info, *g.initializer):
            if v.name == old:
                v.name = new
        for node in g.node:
            for field in (node.input, node.output):
                for i, name in enumerate(field):
                    if name == old:
                        field[i] = new


def _fresh(base: str, taken: set[str]) -> str:
    n = 1
    while f"{base}__{n}" in taken:
        n += 1
    taken.add(f"{base}__{n}")
    return f"{base}__{n}"


def apply_names(model: Any, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Give the graph's inputs and outputs these names, in order, moving inner values aside."""
    import onnx

    graph = model.graph
    real_inputs = [v for v in graph.input if v.name not in {t.name for t in graph.initializer}]
    if len(real_inputs) != len(inputs) or len(graph.output) != len(outputs):
        raise ExportError(
            f"the ONNX graph has {len(real_inputs)} inputs and {len(graph.output)} outputs; "
            f"expected {len(inputs)} and {len(outputs)}"
        )
    wanted = set(inputs) | set(outputs)
    taken = _names(graph) | wanted
    # Inner values (and exporter-named inputs/outputs) holding a wanted name move aside first.
    for name in sorted(_names(graph) & wanted):
        _rename(graph, name, _fresh(name, taken))
    for value, name in zip(real_inputs, inputs, strict=True):
        _rename(graph, value.name, name)
    input_names = set(inputs)
    seen: set[str] = set()
    for k, name in enumerate(outputs):
        value = graph.output[k].name
        if value in input_names or value in seen:
            # An output that is an input, or a value returned twice: an Identity gives it a
            # name of its own.
            graph.node.append(onnx.helper.make_node("Identity", [value], [name]))
            graph.output[k].name = name
        else:
            _rename(graph, value, name)
        seen.add(name)


def name_and_check(path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Rename the exported graph's inputs and outputs, then check it: the ONNX checker and an
    onnxruntime load, before parity runs on it."""
    import onnx

    model = onnx.load(str(path))
    apply_names(model, inputs, outputs)
    onnx.save(model, str(path))
    check(path)


def check(path: Path) -> None:
    """The ONNX checker (with shape inference) and an onnxruntime load; ExportError naming
    what each said."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx's ValidationError / InferenceError: reported, not raised
        raise ExportError(f"the ONNX checker refuses the graph: {_one_line(exc)}") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph
        raise ExportError(f"onnxruntime cannot load the graph: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{text[:400]}{'...' if len(text) > 400 else ''}"
