"""`tritonpipe deploy ...` and `tritonpipe serve --replicas N`."""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tritonpipe.errors import TritonPipeError
from tritonpipe.tensors import Array

app = typer.Typer(
    help="Replicas, model updates, monitoring and deployable manifests.", no_args_is_help=True
)


def _fail(exc: Exception | str) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def serve_replicas(
    repository: Path,
    *,
    replicas: int,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    token: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    workdir: Path,
    exit_timeout: int,
    open_inference: bool = False,
    balance: str = "leastconn",
    trace_url: str | None = None,
    trace_rate: int = 1,
) -> None:
    """N supervised replicas behind HAProxy until SIGINT/SIGTERM (called by `serve --replicas`)."""
    from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions
    from tritonpipe.server.options import check_repository

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        options = ReplicaSetOptions(
            repository=repository,
            replicas=replicas,
            workdir=workdir,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            token=token,
            tls_cert=tls_cert,
            tls_key=tls_key,
            exit_timeout_s=exit_timeout,
            open_inference=open_inference,
            balance=balance,
            trace_url=trace_url,
            trace_rate=trace_rate,
        )
        check_repository(repository)
        fleet = ReplicaSet(options).start()
    except TritonPipeError as exc:
        raise _fail(exc) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    assert fleet.balancer is not None
    typer.echo(
        f"serving {repository} on {replicas} replicas behind HAProxy: HTTP {fleet.balancer.http_url}  "
        f"gRPC {fleet.balancer.grpc_url}  balancer metrics {fleet.balancer.metrics_url}\n"
        f"state, logs, prometheus.yml: {fleet.workdir}  (Ctrl-C stops)"
    )
    typer.echo(fleet.servers[0].options.token_banner())
    stop.wait()
    typer.echo("stopping: letting in-flight requests finish")
    fleet.stop()


def _smoke_inputs(items: list[str]) -> dict[str, dict[str, Array]]:
    inputs: dict[str, dict[str, Array]] = {}
    for item in items:
        target, sep, path = item.partition("=")
        model, colon, name = target.partition(":")
        if not (sep and colon and model and name):
            raise typer.BadParameter(f"--smoke-input {item!r}: write MODEL:INPUT=FILE.npy")
        if not Path(path).is_file():
            raise typer.BadParameter(f"--smoke-input {item!r}: file {path} not found")
        inputs.setdefault(model, {})[name] = np.load(path, allow_pickle=True)
    return inputs


@app.command()
def update(
    build: Annotated[
        Path, typer.Argument(help="Pipeline spec (YAML, built here) or a built model repository.")
    ],
    state: Annotated[
        Path, typer.Option(help="replicas.json written by `serve --replicas`.")
    ] = Path("replicas/replicas.json"),
    token: Annotated[
        str | None, typer.Option(help="The servers' token.", envvar="TRITONPIPE_TOKEN")
    ] = None,
    smoke_input: Annotated[
        list[str] | None,
        typer.Option(
            help="MODEL:INPUT=FILE.npy for the smoke request (needed for BYTES inputs; repeat)."
        ),
    ] = None,
    smoke_model: Annotated[
        list[str] | None,
        typer.Option(help="Models to smoke-test (default: the last ensemble, or the last model)."),
    ] = None,
) -> None:
    """Roll a new build out to the running replicas one at a time: load next to the old one, check ready + smoke, switch, unload the old; on failure the old build keeps serving."""
    from tritonpipe.deploy.balancer import Runtime
    from tritonpipe.deploy.rollout import Replica, Rollout
    from tritonpipe.ensembles import build_repository

    try:
        fleet = json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(
            f"{state}: cannot read the replica set's state ({exc}); is `serve --replicas` running?"
        ) from None
    replicas = [
        Replica(name=r["name"], http_url=r["http_url"], repository=Path(r["repository"]))
        for r in fleet["replicas"]
    ]
    runtime = Runtime(Path(fleet["balancer"]["socket"]))
    try:
        with tempfile.TemporaryDirectory(prefix="tritonpipe-build-") as tmp:
            if build.suffix in (".yaml", ".yml"):
                repository = Path(tmp) / "repo"
                build_repository(build, repository)
            else:
                repository = build
            rollout = Rollout(
                replicas,
                runtime,
                token=token,
                smoke_inputs=_smoke_inputs(smoke_input or []),
                smoke_models=smoke_model,
                progress=typer.echo,
            )
            updates = rollout.run(repository)
    except TritonPipeError as exc:
        raise _fail(exc) from None
    versions = ", ".join(f"{m} v{v}" for m, v in updates[0].versions.items())
    typer.echo(f"updated {len(updates)} replica(s) to {versions}")


@app.command()
def manifests(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write (compose.yaml, kubernetes/, prometheus/, grafana/, haproxy/).",
        ),
    ] = Path("docker"),
    replicas: Annotated[int, typer.Option(help="Replica count from the capacity plan.")] = 2,
    max_replicas: Annotated[
        int | None, typer.Option(help="HPA ceiling (default 2 x replicas).")
    ] = None,
    gpus: Annotated[int, typer.Option(help="GPUs per replica.")] = 1,
    name: Annotated[
        str | None, typer.Option(help="Resource name (default: the spec's folder).")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Image with the native repository (default tritonpipe-NAME:latest, built from docker/Dockerfile)."
        ),
    ] = None,
    slo_ms: Annotated[float, typer.Option(help="p99 latency SLO in ms for the alert.")] = 100.0,
    queue_target_us: Annotated[
        int, typer.Option(help="Queue time per request (us) the HPA keeps pods at.")
    ] = 2000,
    check: Annotated[
        bool,
        typer.Option(
            help="Validate the files (Kubernetes, Compose and Grafana schemas, promtool)."
        ),
    ] = True,
) -> None:
    """Generate Docker Compose, Kubernetes, Prometheus and Grafana files from a pipeline spec and a replica count."""
    from tritonpipe.deploy.manifests import plan_from_spec, render, write

    try:
        plan = plan_from_spec(
            spec, name=name, replicas=replicas, max_replicas=max_replicas,
            gpus_per_replica=gpus, image=image, slo_ms=slo_ms, queue_target_us=queue_target_us,
        )  # fmt: skip
        written = write(render(plan, spec.as_posix()), out)
        if check:
            from tritonpipe.deploy import validate

            problems = validate.generated(out)
            if problems:
                raise _fail("\n".join(problems))
    except TritonPipeError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {len(written)} files to {out}" + (" (validated)" if check else ""))


# -- champion and challenger (tritonpipe.deploy.canary) ---------------------------------------
StateOption = Annotated[Path, typer.Option(help="replicas.json written by `serve --replicas`.")]
TokenOption = Annotated[
    str | None, typer.Option(help="The servers' token.", envvar="TRITONPIPE_TOKEN")
]


def _canary(state: Path, token: str | None):  # type: ignore[no-untyped-def]
    from tritonpipe.deploy.balancer import Runtime
    from tritonpipe.deploy.canary import Canary
    from tritonpipe.deploy.rollout import Replica

    try:
        fleet = json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(
            f"{state}: cannot read the replica set's state ({exc}); is `serve --replicas` running?"
        ) from None
    replicas = [
        Replica(name=r["name"], http_url=r["http_url"], repository=Path(r["repository"]))
        for r in fleet["replicas"]
    ]
    return Canary(
        replicas,
        Runtime(Path(fleet["balancer"]["socket"])),
        state_dir=state.parent,
        balance=fleet["balancer"].get("balance", "leastconn"),
        token=token,
        progress=typer.echo,
    )


def _build_variant(spec: Path, which: str, tmp: Path) -> Path:
    from tritonpipe.ensembles import build_repository
    from tritonpipe.shadow.variants import variant_spec

    with variant_spec(spec, which) as path:
        build_repository(path, tmp / which)
    return tmp / which


@app.command()
def canary(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec whose scoring model has shadow:.")],
    share: Annotated[float, typer.Option(help="Share of requests for the challenger (0.1).")] = 0.1,
    count: Annotated[int, typer.Option(help="Replicas that serve the challenger.")] = 1,
    state: StateOption = Path("replicas/replicas.json"),
    token: TokenOption = None,
) -> None:
    """Serve the shadow's version (the challenger) on COUNT replicas taking SHARE of requests (balancer weights; needs `serve --replicas N --balance roundrobin`)."""
    runner = _canary(state, token)
    try:
        with tempfile.TemporaryDirectory(prefix="tritonpipe-build-") as tmp:
            build = _build_variant(spec, "challenger", Path(tmp))
            runner.start(build, share, count, spec=str(spec.resolve()))
    except TritonPipeError as exc:
        raise _fail(exc) from None


@app.command()
def promote(
    spec: Annotated[Path, typer.Argument(help="The canary's pipeline spec.")],
    state: StateOption = Path("replicas/replicas.json"),
    token: TokenOption = None,
) -> None:
    """Move the registry's champion alias to the challenger's version (the old one becomes @previous) and roll it onto the other replicas."""
    from tritonpipe.shadow.variants import promote_aliases

    runner = _canary(state, token)
    try:
        if runner.state() is None:
            raise _fail(f"no canary is running ({runner.state_path} not found)")
        for line in promote_aliases(spec):
            typer.echo(f"registry: {line}")
        with tempfile.TemporaryDirectory(prefix="tritonpipe-build-") as tmp:
            runner.promote(_build_variant(spec, "champion", Path(tmp)))
    except TritonPipeError as exc:
        raise _fail(exc) from None


@app.command()
def rollback(
    spec: Annotated[Path, typer.Argument(help="The canary's pipeline spec.")],
    state: StateOption = Path("replicas/replicas.json"),
    token: TokenOption = None,
) -> None:
    """End the canary: roll the champion back onto the canary replicas, weights equal again."""
    runner = _canary(state, token)
    try:
        with tempfile.TemporaryDirectory(prefix="tritonpipe-build-") as tmp:
            runner.rollback(_build_variant(spec, "champion", Path(tmp)))
    except TritonPipeError as exc:
        raise _fail(exc) from None
