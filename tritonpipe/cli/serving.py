"""`tritonpipe serve` and `tritonpipe infer`."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from tritonpipe.cli.infer_files import FILES_HELP, build_requests
from tritonpipe.cli.infer_records import RECORD_HELP, infer_records, read_records
from tritonpipe.errors import TritonPipeError, did_you_mean
from tritonpipe.tensors import Array

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def serve(
    repository: Annotated[Path, typer.Argument(help="Model repository to serve.")],
    host: Annotated[str, typer.Option(help="Address to bind (HTTP, gRPC, metrics).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port (0: a free one).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one).")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Metrics port (0: a free one).")] = 8002,
    model_control_mode: Annotated[str, typer.Option(help="none (load all) or explicit.")] = "none",
    load_model: Annotated[
        list[str] | None, typer.Option(help="Explicit mode: model to load at start (repeat).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Require this token (header tritonpipe-token) for inference and the repository, shared-memory, statistics, trace and logging endpoints; health stays open.",
            envvar="TRITONPIPE_TOKEN",
        ),
    ] = None,
    protect_inference: Annotated[
        bool,
        typer.Option(
            "--protect-inference/--open-inference",
            help="With --token: inference needs the token (default); --open-inference answers inference without it, the token then guards only the admin endpoints.",
        ),
    ] = True,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="Server log (default .tritonpipe/logs/tritonserver-PORT.log, a folder git "
            "ignores; $TRITONPIPE_STATE moves it)."
        ),
    ] = None,
    exit_timeout: Annotated[
        int, typer.Option(help="Seconds to let in-flight requests finish on stop.")
    ] = 30,
    restart: Annotated[
        bool,
        typer.Option(
            help="Restart tritonserver with backoff if it dies; give up (exit 1) after "
            "--max-failures deaths within 5 minutes."
        ),
    ] = True,
    max_failures: Annotated[
        int, typer.Option(min=1, help="Deaths within 5 minutes before serve gives up.")
    ] = 5,
    cache_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Bytes of Triton's local response cache, started when a model in the "
            "repository has response_cache enabled (a pipeline's response_cache: true).",
        ),
    ] = 64 << 20,
    trace_url: Annotated[
        str | None,
        typer.Option(
            help="OpenTelemetry tracing: Triton's spans and one span per pipeline step, sent "
            "over OTLP/HTTP to this endpoint (a collector's, Jaeger's or Tempo's "
            "http://HOST:4318/v1/traces).",
            envvar="TRITONPIPE_TRACE_URL",
        ),
    ] = None,
    trace_rate: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --trace-url: trace 1 request in N (0: only requests carrying a "
            "traceparent, which are always traced).",
        ),
    ] = 1,
    docker: Annotated[
        bool, typer.Option(help="Print the equivalent docker run for NVIDIA's NGC image and exit.")
    ] = False,
    replicas: Annotated[
        int,
        typer.Option(
            help="Run N supervised replicas on loopback behind HAProxy, which listens on --host and the ports."
        ),
    ] = 1,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="With --replicas: PEM certificate the balancer serves (HTTPS, gRPC over TLS)."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="With --tls-cert: its private key (PEM).")
    ] = None,
    workdir: Annotated[
        Path,
        typer.Option(
            help="With --replicas: folder for replica repositories, logs, haproxy.cfg and replicas.json."
        ),
    ] = Path("replicas"),
    balance: Annotated[
        str,
        typer.Option(
            help="With --replicas: leastconn, or roundrobin (follows weights; `deploy canary` needs it)."
        ),
    ] = "leastconn",
) -> None:
    """Serve a model repository with the real tritonserver, supervised, until SIGINT/SIGTERM."""
    from tritonpipe.server import ServerOptions, TritonServer, running
    from tritonpipe.server.options import check_repository

    if replicas != 1 or tls_cert or tls_key:
        from tritonpipe.cli.deploy import serve_replicas

        serve_replicas(
            repository, replicas=replicas, host=host, http_port=http_port, grpc_port=grpc_port,
            metrics_port=metrics_port, token=token, tls_cert=tls_cert, tls_key=tls_key,
            workdir=workdir, exit_timeout=exit_timeout, open_inference=not protect_inference,
            balance=balance, trace_url=trace_url, trace_rate=trace_rate,
        )  # fmt: skip
        return

    try:
        options = ServerOptions(
            repository=repository,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            model_control=model_control_mode,
            models=tuple(load_model or ()),
            token=token,
            protect_inference=protect_inference,
            exit_timeout_s=exit_timeout,
            cache_bytes=cache_size,
            trace_url=trace_url,
            trace_rate=trace_rate,
        )
        check_repository(repository)
        if docker:
            typer.echo(options.docker_command())
            return
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        server = TritonServer(
            options, log_path=log_file, restart=restart, max_failures=max_failures
        )
        typer.echo(f"starting tritonserver; its log: {server.log_path}")
        server.start()
    except TritonPipeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(
        f"serving {repository}: HTTP {server.http_url}  gRPC {server.grpc_url}  "
        f"metrics {server.metrics_url}  log {server.log_path}  (Ctrl-C stops)"
    )
    typer.echo(options.token_banner())
    running.record(server.http_url, server.grpc_url, server.metrics_url)
    try:
        while not stop.wait(0.5) and server.failure is None:
            pass
    finally:
        running.forget(server.http_url)
    _stop(server, exit_timeout)
    if server.failure is not None:
        typer.secho(f"error: {server.failure}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)


def _stop(server: Any, exit_timeout: int) -> None:
    """Stop the server, saying why it may take a while (Triton first waits for clients to
    close their HTTP connections, then for in-flight requests)."""
    connections = server.open_http_connections()
    if connections:
        typer.echo(
            f"stopping: {connections} HTTP client connection(s) still open; Triton waits up to "
            f"{exit_timeout}s for their clients to close them, then for in-flight requests"
        )
    else:
        typer.echo("stopping: letting in-flight requests finish")
    code = server.stop()
    reason = ""
    if code:
        from tritonpipe.server.logs import log_excerpt

        why = [server.stop_cause] if server.stop_cause else []
        if connections:
            why.append("clients kept HTTP connections open past the exit timeout")
        if server.stop_cause and "unloading" in server.stop_cause:
            why.append(
                f"--exit-timeout is {exit_timeout}s and each Python-backend instance takes "
                "about a second to unload: raise it"
            )
        if why:
            reason = f" ({'; '.join(why)})"
        else:
            reason = f"; from its log {server.log_path}:\n{log_excerpt(server.log_path, lines=5)}"
    typer.echo(f"tritonserver exited with code {code}{reason}")


def _to_json(value: Array) -> Any:
    if value.dtype == object:
        return [
            _to_json(v)
            if isinstance(v, np.ndarray)
            else (v.decode(errors="replace") if isinstance(v, bytes) else v)
            for v in value
        ]
    return value.tolist()


def _as_lines(outputs: dict[str, Any]) -> str:
    """One JSON object with each output on its own line (its rows compact, not one number per
    line): still valid JSON, and readable."""
    body = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps(value)}" for name, value in outputs.items()
    )
    return "{\n" + body + "\n}"


def infer(
    model: Annotated[str, typer.Argument(help="Model or ensemble name.")],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help=FILES_HELP),
    ] = None,
    record: Annotated[list[str] | None, typer.Option("--record", help=RECORD_HELP)] = None,
    url: Annotated[
        str, typer.Option(help="http://host:port or grpc://host:port.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(help="Token for protected endpoints.", envvar="TRITONPIPE_TOKEN")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 30.0,
) -> None:
    """Send JSON records (--record) or files to a model and print its outputs as JSON.

    With records: one JSON object of outputs per record (an object for one record, a list for
    several). With files: when they went as several requests (their shapes differ), the JSON is
    a list with one object per request."""
    from tritonpipe.client import Client

    if bool(record) == bool(inputs):
        typer.secho("error: give --record JSON or input files (not both)", err=True, fg="red")
        raise typer.Exit(2)
    if record:
        try:
            records = read_records(record)
            with Client(url, token=token, timeout_s=timeout) as client:
                scored = infer_records(client, model, records)
        except (TritonPipeError, OSError) as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(scored[0] if len(scored) == 1 else scored, indent=1))
        return
    inputs = inputs or []
    try:
        with Client(url, token=token, timeout_s=timeout) as client:
            info = client.model(model)
            specs = {s.name: s for s in info.inputs}
            files: dict[str, list[Path]] = {}
            for item in inputs:
                name, sep, path = item.rpartition("=")
                if not sep:
                    if len(specs) != 1:
                        raise typer.BadParameter(
                            f"{item!r}: model '{model}' has inputs {list(specs)}; write NAME=FILE"
                        )
                    name = next(iter(specs))
                if name not in specs:
                    raise typer.BadParameter(
                        f"model '{model}' has no input '{name}' (inputs: {', '.join(specs)})"
                        + did_you_mean(name, specs)
                    )
                if not Path(path).is_file():
                    raise typer.BadParameter(f"input '{name}': file {path} not found")
                files.setdefault(name, []).append(Path(path))
            requests = build_requests(info, files)
            answers = [client.infer(model, arrays) for arrays in requests]
    except (TritonPipeError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    results = [{name: _to_json(value) for name, value in out.items()} for out in answers]
    if len(results) > 1:
        typer.echo(f"files of different shapes: sent {len(results)} requests", err=True)
    if len(results) == 1:
        typer.echo(_as_lines(results[0]))
    else:  # a JSON list, one object per request
        typer.echo("[\n" + ",\n".join(_as_lines(r) for r in results) + "\n]")
