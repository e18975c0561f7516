"""The digits pipeline with a third scoring format: the CNN compiled by AOTInductor (``.pt2``).

Exports the trained CNN as ``aoti`` and builds a repository holding pipeline.yaml's two ensembles
plus ``digits_aoti`` (preprocess -> digits_pt2, the AOTI model -> postprocess, fused into one
model like the others), in a folder of its
own, so the committed model_repository/ stays as `make repository` writes it. Used by
``demo.py --aoti``.

    python examples/digits/aoti.py --out build/digits-aoti
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from tritonpipe.ensembles import build_repository
from tritonpipe.export import export, parse_export_input

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    """Export (once) and build; returns the repository folder, ``out/repo``."""
    export_dir = out / "export"
    if not (export_dir / "model.pt2").is_file():
        export(
            f"{HERE / 'model.py'}:trained",
            [parse_export_input("pixels:FP32:1,8,8")],
            export_dir,
            formats=["aoti"],
            output_names=["logits"],
            max_batch_size=64,
        )
    spec = yaml.safe_load((HERE / "pipeline.yaml").read_text())
    for stage in spec["stages"].values():
        stage["function"] = str(HERE / stage["function"])
    for model in spec["models"].values():
        model["export"] = str(HERE / model["export"])
    for ensemble in spec["ensembles"].values():  # warmup samples are relative to the spec too
        for name, sample in (ensemble.get("warmup") or {}).items():
            ensemble["warmup"][name] = str(HERE / sample)
    spec["models"]["digits_pt2"] = spec["models"]["digits_onnx"] | {
        "export": str(export_dir.resolve()),
        "format": "aoti",
    }
    spec["ensembles"]["digits_aoti"] = {"steps": ["preprocess", "digits_pt2", "postprocess"]}
    spec_path = out / "pipeline-aoti.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    build_repository(spec_path, out / "repo")
    return out / "repo"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/digits-aoti"))
    print(f"built {build(parser.parse_args().out)}")
