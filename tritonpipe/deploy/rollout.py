"""Model updates with zero dropped requests, one replica at a time.

For each replica: take it out of the balancer's rotation (drain) and wait for its open requests;
add the new build next to the old one (a new version folder per model, explicit model control);
load it; check every new version is ready and answers a smoke request; put the replica back.
Triton's version policy (latest 1) unloads the old version once the new one is ready, after its
in-flight requests finish. Any failure rolls that replica back, then every replica already
updated, and raises :class:`DeployError` saying why: the old build keeps serving throughout.

A replica is drained whenever the balancer has another replica in rotation to take its traffic,
however many this rollout updates (a canary rolls one replica of several: left in rotation, it
would answer while its models reload, some requests waiting many seconds). With no other replica
in rotation the replica stays in: Triton swaps versions without dropping requests, and the smoke
check runs right after the swap."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.deploy.balancer import Runtime
from tritonpipe.errors import DeployError, ServerError
from tritonpipe.server.options import TOKEN_HEADER
from tritonpipe.tensors import Array

log = logging.getLogger("tritonpipe.deploy")

SmokeInputs = Mapping[str, Mapping[str, Array]]  # model -> input name -> batch


@dataclass(frozen=True, kw_only=True)
class Replica:
    """One replica a rollout updates: its name in the balancer, its HTTP URL, its repository."""

    name: str
    http_url: str
    repository: Path


@dataclass
class ReplicaUpdate:
    """What was changed on one replica, so it can be undone."""

    replica: Replica
    versions: dict[str, int]  # model -> the new version
    old_configs: dict[str, bytes | None] = field(default_factory=dict)
    unloaded: dict[str, int] = field(default_factory=dict)  # model -> old version now unloaded


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def load_order(build: Path) -> list[str]:
    """Models of a built repository, ensembles last so their steps are loaded first."""
    models = sorted(p.name for p in build.iterdir() if (p / "config.pbtxt").is_file())
    if not models:
        raise DeployError(f"{build}: no models (a folder with config.pbtxt) to deploy")

    def is_ensemble(name: str) -> bool:
        return 'platform: "ensemble"' in (build / name / "config.pbtxt").read_text()

    return sorted(models, key=is_ensemble)


def others_in_rotation(rows: Mapping[tuple[str, str], Mapping[str, str]], replica: str) -> bool:
    """Whether a replica other than ``replica`` is up with a weight in every backend (``show
    stat`` rows by (backend, replica)): only then can ``replica`` be drained."""
    backends = {backend for backend, _ in rows}
    return bool(backends) and all(
        any(
            name != replica and row["status"].startswith("UP") and int(row["weight"] or 0) > 0
            for (b, name), row in rows.items()
            if b == backend
        )
        for backend in backends
    )


def _replace(path: Path, data: bytes) -> None:
    """Write by rename: the old file may be a hard link shared with other replicas."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Rollout:
    """``Rollout(replicas, runtime).run(build)`` deploys the built repository ``build``."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        runtime: Runtime | None = None,
        *,
        token: str | None = None,
        smoke_inputs: SmokeInputs | None = None,
        smoke_models: Sequence[str] | None = None,
        drain_timeout_s: float = 30.0,
        load_timeout_s: float = 300.0,
        progress: Callable[[str], None] = log.info,
    ) -> None:
        if not replicas:
            raise DeployError("no replicas to update")
        self.replicas = list(replicas)
        self.runtime = runtime
        self.token = token
        self.smoke_inputs = dict(smoke_inputs or {})
        self.smoke_models = list(smoke_models) if smoke_models else None
        self.drain_timeout_s = drain_timeout_s
        self.load_timeout_s = load_timeout_s
        self.progress = progress

    def run(self, build: Path) -> list[ReplicaUpdate]:
        order = load_order(build)
        smoke = self.smoke_models or [m for m in order if m == order[-1] or m in self.smoke_inputs]
        unknown = sorted(set(smoke) - set(order))
        if unknown:
            raise DeployError(f"smoke model(s) {unknown} are not in the build (models: {order})")
        done: list[ReplicaUpdate] = []
        for replica in self.replicas:
            update = ReplicaUpdate(
                replica=replica,
                versions={m: max(versions(replica.repository / m), default=0) + 1 for m in order},
            )
            try:
                self._update(replica, update, build, order, smoke)
            except (DeployError, ServerError) as exc:  # ServerError: the balancer's side
                reason = f"{replica.name}: {exc}"
                self.progress(f"{reason}; rolling back")
                for undo in [update, *reversed(done)]:
                    self._rollback(undo, order)
                raise DeployError(
                    f"update refused, the previous build still serves on every replica. {reason}"
                ) from None
            done.append(update)
        return done

    # -- one replica -----------------------------------------------------------------------
    def _update(
        self,
        replica: Replica,
        update: ReplicaUpdate,
        build: Path,
        order: list[str],
        smoke: list[str],
    ) -> None:
        self._drain(replica)
        for model in order:
            target = replica.repository / model
            target.mkdir(parents=True, exist_ok=True)
            config = target / "config.pbtxt"
            update.old_configs[model] = config.read_bytes() if config.is_file() else None
            shutil.copytree(build / model / "1", target / str(update.versions[model]))
            if (build / model / "warmup").is_dir():  # model_warmup's samples, beside config
                shutil.copytree(build / model / "warmup", target / "warmup", dirs_exist_ok=True)
            _replace(config, (build / model / "config.pbtxt").read_bytes())
        self.progress(
            f"{replica.name}: loading {', '.join(f'{m} v{v}' for m, v in update.versions.items())}"
        )
        for model in order:
            self._load(replica, model)
        for model in order:
            self._check_ready(replica, model, update.versions[model])
        for model in smoke:
            self._smoke(replica, model, update.versions[model])
        for model, version in update.versions.items():
            old = [v for v in versions(replica.repository / model) if v < version]
            if old and not self._ready(replica, model, old[-1]):
                update.unloaded[model] = old[-1]
            # Keep the previous version on disk (a restart still loads the newest only).
            for stale in old[:-1]:
                shutil.rmtree(replica.repository / model / str(stale), ignore_errors=True)
        self._enable(replica)
        self.progress(f"{replica.name}: serving the new build")

    def _rollback(self, update: ReplicaUpdate, order: list[str]) -> None:
        replica = update.replica
        for model in order:
            folder = replica.repository / model / str(update.versions[model])
            shutil.rmtree(folder, ignore_errors=True)
            old = update.old_configs.get(model)
            if old is not None:
                _replace(replica.repository / model / "config.pbtxt", old)
        for model in order:
            if update.old_configs.get(model) is None:
                self._post(replica, f"/v2/repository/models/{model}/unload")
            else:
                try:
                    self._load(replica, model)
                except DeployError as exc:
                    self.progress(f"{replica.name}: rollback of {model} failed: {exc}")
        self._enable(replica)
        self.progress(f"{replica.name}: rolled back")

    # -- balancer --------------------------------------------------------------------------
    def _drain(self, replica: Replica) -> None:
        if self.runtime is None or not others_in_rotation(self.runtime.servers(), replica.name):
            return
        self.runtime.set_state(replica.name, "drain")
        deadline = time.monotonic() + self.drain_timeout_s
        while (left := self.runtime.in_flight(replica.name)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            self.progress(
                f"{replica.name}: {left} request(s) still open after {self.drain_timeout_s:.0f}s "
                "of draining; Triton finishes them before unloading the old version"
            )
        self.progress(f"{replica.name}: drained from the balancer")

    def _enable(self, replica: Replica) -> None:
        if self.runtime is None:
            return
        # Ready again (a no-op for a replica never drained), then up by the health checks.
        self.runtime.set_state(replica.name, "ready")
        self.runtime.wait_state(replica.name, up=True, timeout_s=self.load_timeout_s)

    # -- Triton ----------------------------------------------------------------------------
    def _request(
        self, replica: Replica, path: str, body: bytes | None = None, timeout_s: float = 10.0
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(replica.http_url + path, data=body)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header(TOKEN_HEADER, self.token)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            raise DeployError(f"{replica.http_url}{path}: {exc}") from None

    def _post(self, replica: Replica, path: str) -> tuple[int, bytes]:
        return self._request(replica, path, b"{}", timeout_s=self.load_timeout_s)

    def _load(self, replica: Replica, model: str) -> None:
        status, body = self._post(replica, f"/v2/repository/models/{model}/load")
        if status != 200:
            raise DeployError(f"model '{model}' failed to load: {_error(body)}")

    def _ready(self, replica: Replica, model: str, version: int) -> bool:
        status, _ = self._request(replica, f"/v2/models/{model}/versions/{version}/ready")
        return status == 200

    def _check_ready(self, replica: Replica, model: str, version: int) -> None:
        if not self._ready(replica, model, version):
            raise DeployError(f"model '{model}' version {version} loaded but is not ready")

    def _smoke(self, replica: Replica, model: str, version: int) -> None:
        base = f"/v2/models/{model}/versions/{version}"
        status, body = self._request(replica, base)
        if status != 200:
            raise DeployError(f"model '{model}' version {version} metadata: {_error(body)}")
        metadata = json.loads(body)
        arrays = self.smoke_inputs.get(model) or synthetic_inputs(model, metadata["inputs"])
        datatypes = {str(i["name"]): str(i["datatype"]) for i in metadata["inputs"]}
        try:
            outputs = _infer(replica.http_url, model, version, arrays, datatypes, self.token)
        except Exception as exc:  # tritonclient raises its own types; each means "no answer"
            raise DeployError(
                f"smoke request to '{model}' version {version} failed: {exc}"
            ) from None
        for name, value in outputs.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise DeployError(
                    f"smoke request to '{model}' version {version}: output '{name}' holds "
                    "NaN or infinite values"
                )
        self.progress(f"{replica.name}: smoke request to {model} v{version} answered")


def synthetic_inputs(model: str, inputs: list[dict[str, object]]) -> dict[str, Array]:
    """A batch of one of zeros per numeric input; BYTES inputs need a sample from the user."""
    arrays = {}
    for spec in inputs:
        name, datatype = str(spec["name"]), str(spec["datatype"])
        if datatype == "BYTES":
            raise DeployError(
                f"model '{model}' input '{name}' is BYTES: give a smoke sample "
                f"(--smoke-input {model}:{name}=FILE)"
            )
        shape = [max(int(d), 1) for d in spec["shape"]]  # type: ignore[attr-defined]
        arrays[name] = np.zeros(shape, dtype=np.float64 if datatype.startswith("FP") else np.int64)
    return arrays


def _infer(
    url: str,
    model: str,
    version: int,
    arrays: Mapping[str, Array],
    datatypes: Mapping[str, str],
    token: str | None,
) -> dict[str, Array]:
    import tritonclient.http as http

    inputs = []
    for name, array in arrays.items():
        if name not in datatypes:
            raise DeployError(f"smoke input '{name}': model '{model}' has inputs {list(datatypes)}")
        tensor = http.InferInput(name, list(array.shape), datatypes[name])
        tensor.set_data_from_numpy(np.asarray(array).astype(_numpy_type(datatypes[name])))
        inputs.append(tensor)
    client = http.InferenceServerClient(url.split("://", 1)[1], network_timeout=60.0)
    try:
        result = client.infer(
            model,
            inputs,
            model_version=str(version),
            headers={TOKEN_HEADER: token} if token else None,
        )
        response = result.get_response()
        return {o["name"]: result.as_numpy(o["name"]) for o in response.get("outputs", [])}
    finally:
        client.close()


def _numpy_type(datatype: str) -> np.dtype[Any]:
    from tritonpipe.tensors import dtype

    return np.dtype(object) if datatype == "BYTES" else np.dtype(dtype(datatype).numpy)


def _error(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body.decode(errors="replace")))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:500]
