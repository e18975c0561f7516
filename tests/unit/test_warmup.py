"""warmup: on an ensemble: samples become Triton's model_warmup in the fused model, or in every
step model of an unfused ensemble (later steps get what the earlier ones computed from the
sample), in Triton's raw input format; bad samples are named."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as pb

from tests.conftest import ASSETS
from tritonpipe.ensembles import build_repository
from tritonpipe.ensembles.warmup import add_warmup
from tritonpipe.errors import SpecError
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.tensors import TensorSpec

SPEC = """
stages:
  scale:
    function: test_stages.py:affine
    parameters: {scale: 2}
    inputs: [{name: x, dtype: FP32, shape: [4]}]
    outputs: [{name: y, dtype: FP32, shape: [4]}]
  count:
    function: test_stages.py:affine
    inputs: [{name: x, dtype: FP32, shape: [4]}]
    outputs: [{name: y, dtype: FP32, shape: [4]}]
ensembles:
  fused:
    steps: [scale, {model: count, inputs: {x: y}, outputs: {y: z}}]
    warmup: {x: sample.npy}
  unfused:
    steps: [scale, {model: count, inputs: {x: y}, outputs: {y: z}}]
    fuse: none
    warmup: {x: sample.npy}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    shutil.copyfile(ASSETS / "test_stages.py", tmp_path / "test_stages.py")
    np.save(tmp_path / "sample.npy", np.array([1.5, 2, 3, 4], np.float64))
    (tmp_path / "pipeline.yaml").write_text(text)
    return tmp_path / "pipeline.yaml"


def test_fused_model_and_every_unfused_step_get_a_warmup(tmp_path: Path) -> None:
    build_repository(_spec(tmp_path), tmp_path / "repo")
    for model in ("fused", "scale"):
        config = parse_pbtxt((tmp_path / "repo" / model / "config.pbtxt").read_text())
        (warmup,) = config.model_warmup
        assert warmup.batch_size == 1
        assert list(warmup.inputs["x"].dims) == [4]
        assert warmup.inputs["x"].input_data_file == "x"
        raw = (tmp_path / "repo" / model / "warmup" / "x").read_bytes()
        assert raw == np.array([1.5, 2, 3, 4], np.float32).tobytes()
    # The second step is warmed with the first step's output on the sample (scale: 2).
    (warmup,) = parse_pbtxt((tmp_path / "repo" / "count" / "config.pbtxt").read_text()).model_warmup
    assert list(warmup.inputs["x"].dims) == [4]
    raw = (tmp_path / "repo" / "count" / "warmup" / "x").read_bytes()
    assert raw == np.array([3, 4, 6, 8], np.float32).tobytes()
    assert not parse_pbtxt(
        (tmp_path / "repo" / "unfused" / "config.pbtxt").read_text()
    ).model_warmup


def test_a_step_that_fails_on_the_sample_is_named(tmp_path: Path) -> None:
    path = _spec(
        tmp_path,
        SPEC.replace(
            "test_stages.py:affine\n    parameters: {scale: 2}",
            "test_stages.py:affine\n    parameters: {scale: nope}",
        ),
    )
    with pytest.raises(SpecError, match=r"ensembles.unfused.warmup: step model 'scale' failed"):
        build_repository(path, tmp_path / "repo")


def test_bytes_sample_is_length_prefixed(tmp_path: Path) -> None:
    (tmp_path / "sample.png").write_bytes(b"\x89PNG-bytes")
    config = pb.ModelConfig(name="digits", max_batch_size=8)
    image = TensorSpec(name="image", dtype="BYTES", shape=(1,))
    add_warmup(tmp_path, config, [image], {"image": tmp_path / "sample.png"}, "spec")
    assert (tmp_path / "warmup" / "image").read_bytes() == struct.pack("<I", 10) + b"\x89PNG-bytes"
    inputs = config.model_warmup[0].inputs["image"]
    assert (pb.DataType.Name(inputs.data_type), list(inputs.dims)) == ("TYPE_STRING", [1])


def test_missing_and_misshapen_samples_are_named(tmp_path: Path) -> None:
    path = _spec(tmp_path, SPEC.replace("warmup: {x: sample.npy}", "warmup: {w: sample.npy}", 1))
    with pytest.raises(SpecError, match=r"ensembles.fused.warmup: .*missing x"):
        build_repository(path, tmp_path / "repo")
    path = _spec(tmp_path)
    np.save(tmp_path / "sample.npy", np.zeros((2, 4)))
    with pytest.raises(SpecError, match=r"sample.npy: warmup sample for 'x' has shape \[2, 4\]"):
        build_repository(path, tmp_path / "repo")


def test_load_warmup_reads_back_what_build_wrote(tmp_path: Path) -> None:
    from tritonpipe.backend.warmup import load_warmup
    from tritonpipe.ensembles.warmup import add_load_warmup
    from tritonpipe.tensors import TensorSpec

    inputs = [
        TensorSpec(name="cat", dtype="BYTES", shape=(1,)),
        TensorSpec(name="amount", dtype="FP64", shape=(2,)),
    ]
    rows = {"cat": np.array([b"tabby"], dtype=object), "amount": np.array([1.5, np.nan])}
    add_load_warmup(tmp_path, inputs, rows)
    batch = load_warmup(tmp_path, batched=True)
    assert batch is not None
    assert batch["cat"].shape == (1, 1) and batch["cat"][0, 0] == b"tabby"
    assert batch["amount"].dtype == np.float64 and batch["amount"].shape == (1, 2)
    assert np.isnan(batch["amount"][0, 1])
    assert load_warmup(tmp_path / "none", batched=True) is None


LOGGED = "    log: {sink: {type: parquet, path: logs}}\n    warmup: {x: sample.npy}"


def test_a_logging_fused_model_is_warmed_at_load_not_by_triton(tmp_path: Path) -> None:
    """Triton's model_warmup would go through the prediction log: the samples go into the
    version folder for the model's own initialize instead."""
    text = SPEC.replace("    warmup: {x: sample.npy}\n  unfused:", LOGGED + "\n  unfused:")
    build_repository(_spec(tmp_path, text.split("  unfused:")[0]), tmp_path / "repo")
    config = parse_pbtxt((tmp_path / "repo" / "fused" / "config.pbtxt").read_text())
    assert not config.model_warmup
    assert (tmp_path / "repo" / "fused" / "1" / "warmup.json").is_file()


def test_warmup_on_an_unfused_logging_ensemble_is_refused(tmp_path: Path) -> None:
    text = SPEC.replace("    fuse: none\n    warmup: {x: sample.npy}", "    fuse: none\n" + LOGGED)
    with pytest.raises(SpecError, match=r"ensembles.unfused.warmup: an unfused ensemble that logs"):
        build_repository(_spec(tmp_path, text), tmp_path / "repo")
