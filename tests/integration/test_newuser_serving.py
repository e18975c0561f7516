"""A new user's own pipeline served by `tritonpipe serve --token T`, as they would run it: the
token guards inference, a model's own failure answers one line with a request id (the details
in the server log), a stage parameter takes effect served and in-process, and `perf profile`'s
defaults work on it. Also `serve` refusing what is not a repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ASSETS
from tests.integration.lines import Lines
from tritonpipe.client import Client
from tritonpipe.deploy.balancer import Backend, Balancer, BalancerOptions
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import ClientError, InvalidArgument, ModelNotFound, Unauthorized, Unavailable
from tritonpipe.export import export
from tritonpipe.pipeline import Pipeline, PipelineError
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.options import free_port
from tritonpipe.tensors import parse_input_spec

CLI = [sys.executable, "-m", "tritonpipe.cli"]
TOKEN = "user-token-42"
NEWUSER = ASSETS / "newuser"
ROWS = {
    "num": np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32),
    "cat": np.array([[0, 1, 2], [49, 3, 7], [10, 20, 30], [5, 5, 5], [48, 0, 1]]),
}
# |x| >= 100 indexes past the lookup model's table: a failure inside the model.
BAD_X = np.array([[500.0, 1.0]], np.float32)


@dataclass
class Served:
    spec: Path
    repository: Path
    http: str
    grpc: str
    log: Path
    env: dict[str, str]
    banner: str


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("newuser")
    for name in ("pipeline.yaml", "stages.py"):
        shutil.copy(NEWUSER / name, root / name)
    tabular = [parse_input_spec("num:FP32:12"), parse_input_spec("cat:INT64:3")]
    export(f"{NEWUSER / 'tabular.py'}:build", tabular, root / "tab",
           output_names=["score", "embedding"])  # fmt: skip
    export(f"{NEWUSER / 'tabular.py'}:lookup", [parse_input_spec("x:FP32:2")], root / "lookup")
    return root / "pipeline.yaml"


@pytest.fixture(scope="module")
def served(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("newuser-serve")
    build_repository(spec, root / "repo")
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = {**os.environ, "TRITONPIPE_STATE": str(root / "state")}
    log = root / "tritonserver.log"
    serve = subprocess.Popen(
        [*CLI, "serve", str(root / "repo"), "--token", TOKEN, "--log-file", str(log),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--exit-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines = Lines(serve)
    try:
        lines.wait_for("serving", 180)
        seen = lines.wait_for("", 10)  # the line after: what the token protects
        yield Served(
            spec, root / "repo", f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}", log,
            env, "".join(seen),
        )  # fmt: skip
    finally:
        serve.send_signal(signal.SIGINT)
        output = lines.finish(60)
    assert serve.returncode == 0, output


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, served: Served) -> str:
    return served.http if request.param == "http" else served.grpc


def test_a_token_protects_inference_by_default(served: Served, url: str) -> None:
    assert "--open-inference" in served.banner  # the opt-out is named where the user looks
    with Client(url, retries=0) as anonymous:
        assert anonymous.is_ready()  # health stays open for probes
        with pytest.raises(Unauthorized) as info:
            anonymous.infer("tab_ts", ROWS)
    assert "--token" in str(info.value) and "TRITONPIPE_TOKEN" in str(info.value)
    with Client(url, token=TOKEN) as client:
        out = client.infer("tab_ts", ROWS)
    assert out["score"].shape == (5, 1) and out["embedding"].shape == (5, 16)


@pytest.mark.parametrize("model", ["look_onnx", "look_ts"])
def test_a_model_failure_is_one_line_with_a_request_id(
    served: Served, url: str, model: str
) -> None:
    with Client(url, token=TOKEN, retries=0) as client:
        with pytest.raises(ClientError) as info:
            client.infer(model, {"x": BAD_X})
        # The same model still answers good requests.
        assert client.infer(model, {"x": np.ones((2, 2), np.float32)})["output0"].shape == (2, 6)
    error = info.value
    message = str(error)
    assert not isinstance(error, InvalidArgument | Unauthorized), message  # a 500, not a 400
    assert "\n" not in message, message
    assert f"model '{model}' failed" in message
    for leak in ("Traceback", ".py", "Gather", "ONNXRuntime", "index out of range", "/inner"):
        assert leak not in message, message
    match = re.search(r"request id (\w+)", message)
    assert match, message
    logged = served.log.read_text(errors="replace")
    entry = logged[logged.index(f"request {match[1]}") :]
    assert "Traceback" in entry  # the details went to the server log, with the same id
    assert ("Gather" if model == "look_onnx" else "index out of range") in entry


def test_in_process_the_model_failure_keeps_what_the_library_said(served: Served) -> None:
    pipe = Pipeline.load(served.spec, "look_ts", threads=1)
    with pytest.raises(PipelineError) as info:
        pipe({"x": BAD_X})
    assert info.value.invalid is False
    assert "index out of range" in str(info.value)


def test_a_stage_parameter_takes_effect_in_process_and_served(served: Served, url: str) -> None:
    local = Pipeline.load(served.spec, "scored", threads=1)(ROWS)
    with Client(url, token=TOKEN) as client:
        remote = client.infer("scored", ROWS)
        score = client.infer("tab_ts", ROWS)["score"]
    np.testing.assert_array_equal(local["scaled"], remote["scaled"])
    np.testing.assert_array_equal(local["embedding"], remote["embedding"])
    # factor: 3.0 from the spec, not the function's default 1.0.
    np.testing.assert_allclose(remote["scaled"], 3.0 * score, rtol=1e-5)


def test_perf_profile_defaults_work_on_the_users_model(served: Served, tmp_path: Path) -> None:
    """Random category ids come from the export's range (cat in [0, 50)), and the metrics port
    is the one this server was started with (not 8002). The windows (3 x 100 ms) are shorter
    than the runtime's step-counter flush (1 s): the per-step rows still come."""
    csv = tmp_path / "scored.csv"
    result = subprocess.run(
        [*CLI, "perf", "profile", "-m", "scored", "-u", served.http.split("://")[1],
         "--token", TOKEN, "-p", "100", "--max-trials", "3", "-b", "4", "-f", str(csv)],
        capture_output=True, text=True, timeout=300, env=served.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no per-step times" not in result.stdout, result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("1 ")]
    assert rows and rows[0][8] == "0", result.stdout  # the errors column
    steps = (tmp_path / "scored_steps.csv").read_text().splitlines()
    assert len(steps) > 1 and steps[1].startswith("1,"), steps


@pytest.mark.slow
def test_open_inference_at_the_balancer(spec: Path, tmp_path: Path) -> None:
    """`--open-inference` behind HAProxy: inference passes without the token, the admin
    endpoints still need it, and the refusal names --token / TRITONPIPE_TOKEN."""
    repo = tmp_path / "repo"
    build_repository(spec, tmp_path / "all")
    repo.mkdir()
    shutil.move(str(tmp_path / "all" / "look_onnx"), repo / "look_onnx")
    options = ServerOptions(repository=repo, token=TOKEN, protect_inference=False)
    with TritonServer(options, log_path=tmp_path / "log") as server:
        backend = Backend(
            name="r0", http_port=server.options.http_port, grpc_port=server.options.grpc_port
        )
        balancer = BalancerOptions(backends=(backend,), token=TOKEN, open_inference=True)
        with Balancer(balancer, tmp_path / "balancer") as front:
            for address in (front.http_url, front.grpc_url):
                with Client(address, retries=0) as anonymous:
                    x = np.ones((1, 2), np.float32)
                    assert anonymous.infer("look_onnx", {"x": x})["output0"].shape == (1, 6)
                    with pytest.raises(Unauthorized) as info:
                        anonymous.statistics("look_onnx")
                    assert "TRITONPIPE_TOKEN" in str(info.value)
                with Client(address, token=TOKEN) as admin:
                    assert admin.statistics("look_onnx")["model_stats"]


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("empty", "holds no model folders; run `tritonpipe build SPEC.yaml --out DIR`"),
        ("export", "holds no model folders (it is an export folder"),
        ("spec", "is a file, not a model repository; run `tritonpipe build"),
    ],
)
def test_serve_refuses_what_is_not_a_repository(tmp_path: Path, what: str, message: str) -> None:
    target = tmp_path / what
    if what == "spec":
        target = tmp_path / "pipeline.yaml"
        target.write_text("stages: {}\n")
    else:
        target.mkdir()
        if what == "export":
            (target / "manifest.json").write_text("{}")
            (target / "model.onnx").write_bytes(b"")
    result = subprocess.run(
        [*CLI, "serve", str(target), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "starting tritonserver" not in result.stdout


def test_infer_prints_each_output_on_one_line(served: Served, tmp_path: Path) -> None:
    np.save(tmp_path / "num.npy", ROWS["num"])
    np.save(tmp_path / "cat.npy", ROWS["cat"])
    result = subprocess.run(
        [*CLI, "infer", "tab_ts", f"num={tmp_path / 'num.npy'}", f"cat={tmp_path / 'cat.npy'}",
         "--url", served.grpc, "--token", TOKEN],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, result.stdout  # {, score, embedding, }
    out = json.loads(result.stdout)
    assert np.array(out["score"]).shape == (5, 1) and np.array(out["embedding"]).shape == (5, 16)


def test_a_misspelled_model_or_input_gets_a_suggestion(served: Served, tmp_path: Path) -> None:
    client = Client(served.http, token=TOKEN, retries=0)
    with client, pytest.raises(ModelNotFound, match="did you mean 'tab_ts'"):
        client.model("tab_tss")
    np.save(tmp_path / "num.npy", ROWS["num"])
    result = subprocess.run(
        [*CLI, "infer", "tab_ts", f"nums={tmp_path / 'num.npy'}", "--url", served.http,
         "--token", TOKEN],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "did you mean 'num'" in result.stderr


def test_an_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable, match=re.escape(url)):
        Client(url, retries=0).model("anything")
