"""`tritonpipe monitor`: drift and live quality from prediction logs; `monitor serve` exports
them to Prometheus."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from tritonpipe.errors import TritonPipeError

app = typer.Typer(help="Model monitoring from the prediction logs.", no_args_is_help=True)

Logs = Annotated[str, typer.Argument(help="Parquet log folder, or redis://host:port/db#stream.")]
ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile", help="Reference profile: a JSON file, or models:/name/N with --registry."
    ),
]
Registry = Annotated[str | None, typer.Option(help="MLflow tracking URI for a models:/ profile.")]
Window = Annotated[str, typer.Option("--window", help="1d, 6h, 30min, or a row count.")]
Prediction = Annotated[str, typer.Option(help="Log column of the score (0..1).")]
Labels = Annotated[
    str | None,
    typer.Option(
        help="Labels (arrive later): a Parquet path, a SQL URL#table, or feast:REPO#VIEW."
    ),
]
Label = Annotated[str, typer.Option(help="Label column of the labels source.")]
Key = Annotated[str, typer.Option(help="Request key shared by logs and labels.")]
Entity = Annotated[
    str | None,
    typer.Option(
        help="Join by this entity (logs' entity_<name>) and event time instead of the key."
    ),
]
Tolerance = Annotated[
    str | None,
    typer.Option(help="Entity join: the oldest label event used (7d; Feast: the view's ttl)."),
]
Psi = Annotated[float, typer.Option(help="PSI above which a column may drift.")]
PValue = Annotated[float, typer.Option(help="KS / chi-square p-value below which it does.")]


def _profile(source: str, registry: str | None) -> Any:
    import tempfile

    from tritonpipe.monitor import Profile
    from tritonpipe.registry import fetch_profile

    if source.startswith("models:/"):
        if registry is None:
            raise TritonPipeError(f"--profile {source}: give --registry (the MLflow tracking URI)")
        with tempfile.TemporaryDirectory() as tmp:
            path = fetch_profile(source, tracking_uri=registry, dest=Path(tmp) / "profile.json")
            return Profile.load(path)
    return Profile.load(Path(source))


def compute(
    logs: str,
    profile: Any,
    *,
    window: str,
    prediction: str,
    labels: str | None,
    label: str = "label",
    key: str = "request_id",
    entity: str | None = None,
    tolerance: str | None = None,
    psi: float = 0.2,
    p_value: float = 0.01,
    as_of: str | None = None,
) -> Any:
    import pandas as pd

    from tritonpipe.monitor import Thresholds, join_labels, monitor, read_labels
    from tritonpipe.monitor.logs import load

    frame = load(logs)
    if labels is not None:
        when = pd.Timestamp(as_of or pd.Timestamp.now(tz="UTC"))
        when = when.tz_localize("UTC") if when.tzinfo is None else when
        known = read_labels(labels, as_of=when)
        frame = join_labels(
            frame,
            known,
            label=label,
            key=key,
            entity=entity,
            tolerance=tolerance or known.attrs.get("ttl"),
            as_of=when,
        )
    limits = Thresholds(psi=psi, p_value=p_value)
    return monitor(frame, profile, every=window, prediction=prediction, thresholds=limits)


@app.command()
def run(
    logs: Logs,
    profile: ProfileOpt,
    registry: Registry = None,
    window: Window = "1d",
    prediction: Prediction = "output_probability",
    labels: Labels = None,
    label: Label = "label",
    key: Key = "request_id",
    entity: Entity = None,
    tolerance: Tolerance = None,
    psi: Psi = 0.2,
    p_value: PValue = 0.01,
    as_of: Annotated[
        str | None, typer.Option(help="Use only labels known by this time (default: now).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    table: Annotated[Path | None, typer.Option(help="Write the per-window table (.csv).")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 3 when any window drifts.")
    ] = False,
) -> None:
    """Drift per window (every feature and the prediction) and quality when labels are given."""
    from tritonpipe.cli.main import fail
    from tritonpipe.monitor.report import write_report

    try:
        result = compute(
            logs, _profile(profile, registry), window=window, prediction=prediction,
            labels=labels, label=label, key=key, entity=entity, tolerance=tolerance, psi=psi,
            p_value=p_value, as_of=as_of,
        )  # fmt: skip
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    for w in result.windows:
        q = w.quality
        quality = (
            f"  AUC {q.roc_auc:.3f} precision {q.precision:.3f} recall {q.recall:.3f} "
            f"ECE {q.calibration_error:.3f} ({q.rows:,} labelled)"
            if q
            else ""
        )
        typer.echo(
            f"{w.window.label}  {w.rows:>8,} rows  drifted: {', '.join(w.drifted) or '-'}{quality}"
        )
    if report is not None:
        write_report(result, report, psi_limit=psi)
        typer.echo(f"wrote {report}")
    if table is not None:
        result.table().to_csv(table, index=False)
    drifted = sorted({f for w in result.windows for f in w.drifted})
    typer.echo(f"verdict: {'DRIFT in ' + ', '.join(drifted) if drifted else 'no drift'}")
    if fail_on_drift and drifted:
        raise typer.Exit(3)


@app.command()
def serve(
    logs: Logs,
    profile: ProfileOpt,
    registry: Registry = None,
    window: Window = "1h",
    prediction: Prediction = "output_probability",
    labels: Labels = None,
    label: Label = "label",
    key: Key = "request_id",
    entity: Entity = None,
    tolerance: Tolerance = None,
    psi: Psi = 0.2,
    p_value: PValue = 0.01,
    port: Annotated[int, typer.Option(help="Metrics port.")] = 9109,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    interval: Annotated[float, typer.Option(help="Seconds between recomputations.")] = 30.0,
) -> None:
    """Serve Prometheus gauges (per model, version and feature) of the latest window, recomputed
    from the logs every --interval seconds."""
    from tritonpipe.cli.main import fail
    from tritonpipe.monitor.exporter import Exporter

    try:
        reference = _profile(profile, registry)
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    exporter = Exporter(
        lambda: compute(
            logs,
            reference,
            window=window,
            prediction=prediction,
            labels=labels,
            label=label,
            key=key,
            entity=entity,
            tolerance=tolerance,
            psi=psi,
            p_value=p_value,
        )  # fmt: skip
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    typer.echo(f"monitor metrics on http://{host}:{port}/metrics", err=True)
    try:
        exporter.serve(port, host, interval, stop)
    except OSError as exc:
        raise fail(f"--port {port}: {exc}") from None
    except KeyboardInterrupt:
        stop.set()
