"""tritonpipe's load generator: perf_analyzer's measurement method on tritonclient's asyncio
clients. Concurrency mode keeps N requests in flight; request-rate mode sends on a constant or
Poisson schedule. Each load level runs time windows until the last three are stable."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonpipe.client import raw_grpc, raw_http
from tritonpipe.client.blocking import BlockingHttp
from tritonpipe.client.checks import ModelInfo
from tritonpipe.client.protocol import Endpoint, infer_inputs, module, unwrap_config
from tritonpipe.client.raw_grpc import RawGrpc
from tritonpipe.client.raw_h2 import BlockingH2Grpc
from tritonpipe.client.raw_http import RawHttp
from tritonpipe.errors import PerfError
from tritonpipe.perf import input_data
from tritonpipe.perf.results_csv import ResultRow
from tritonpipe.perf.server_stats import ServerTimes, Snapshot, delta, snapshot
from tritonpipe.perf.stability import WINDOWS, is_stable
from tritonpipe.perf.step_metrics import MIN_SPAN_S, Counters, StepRow, scrape
from tritonpipe.perf.step_metrics import delta as step_delta
from tritonpipe.server.options import TOKEN_HEADER


@dataclass(frozen=True, kw_only=True)
class ProfileOptions:
    model: str
    url: str
    protocol: str | None = None  # default: from the url's scheme, else http
    batch_size: int = 1
    mode: str = "concurrency"  # or "request_rate"
    loads: tuple[float, ...] = (1,)
    distribution: str = "constant"  # or "poisson"
    measurement_interval_ms: int = 5000
    stability_percentage: float = 10.0
    max_trials: int = 10
    percentile: int | None = None  # stabilise on this latency percentile instead of the average
    input_data: str = "random"
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shared_memory: str = "none"  # or "system"
    token: str | None = None
    timeout_s: float = 60.0
    # "raw" (requests serialized once and sent as bytes: tritonpipe.client.raw_http on asyncio
    # streams, tritonpipe.client.raw_grpc through grpcio) or "tritonclient" (its asyncio clients).
    transport: str = "raw"
    # Triton's metrics endpoint: per-step times of tritonpipe models are read from it.
    metrics_url: str | None = None
    # Whole requests of batch_size real rows each, sent instead of input_data's samples stacked
    # batch_size times (perf_analyzer's -b repeats one sample; a lookup of one key x256 is
    # cheaper than of 256 keys).
    batches: tuple[dict[str, Any], ...] = ()
    # Concurrency mode on the raw transport: one thread per request in flight, blocking calls
    # (tritonpipe.client.blocking over HTTP, tritonpipe.client.raw_h2 over gRPC); False:
    # asyncio tasks.
    threads: bool = True


@dataclass(frozen=True)
class _Done:
    latency: float
    send: float
    recv: float
    error: str | None


@dataclass(frozen=True)
class LevelResult:
    row: ResultRow
    composing: dict[str, ResultRow]
    stable: bool
    requests: int
    errors: int
    first_error: str | None
    steps: list[StepRow] = field(default_factory=list)  # per-step times of a tritonpipe model
    latencies_s: tuple[float, ...] = ()  # each successful request's, in the reported windows
    server: ServerTimes | None = None  # the server's counts over the reported windows
    seconds: float = 0.0  # the reported windows' length
    window_p99_s: tuple[float, ...] = ()  # each reported window's p99 (0: no request in it)


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else 0.0


class Profiler:
    """``await Profiler(options).run(print)`` returns one LevelResult per load level."""

    MIN_STEP_SPAN_S = MIN_SPAN_S  # per-step rows come from scrapes at least this far apart

    def __init__(self, options: ProfileOptions) -> None:
        if options.mode not in ("concurrency", "request_rate"):
            raise PerfError(f"mode {options.mode!r}: concurrency or request_rate")
        if options.distribution not in ("constant", "poisson"):
            raise PerfError(f"--request-distribution {options.distribution!r}: constant or poisson")
        if (
            options.batch_size < 1
            or options.max_trials < WINDOWS
            or options.measurement_interval_ms < 10
        ):
            raise PerfError("batch size >= 1, max trials >= 3 and measurement interval >= 10 ms")
        self.options = options
        self.endpoint = Endpoint.parse(options.url, options.protocol)
        if options.transport not in ("tritonclient", "raw"):
            raise PerfError(f"--transport {options.transport!r}: tritonclient or raw")
        self.raw: RawHttp | RawGrpc | None = None
        self._handles: list[Any] = []  # shared-memory pools, freed when the run ends
        self.mod = module(self.endpoint.protocol, asyncio=True)
        header = (
            TOKEN_HEADER
            if self.endpoint.protocol == "http"
            else f"triton-grpc-protocol-{TOKEN_HEADER}"
        )
        self.headers = {header: options.token} if options.token else None
        self.infer_headers = dict(self.headers or {})
        if self.endpoint.protocol == "http":
            # aiohttp asks for gzip by default: Triton would compress every response and the
            # client decompress it, CPU perf_analyzer does not spend.
            self.infer_headers["Accept-Encoding"] = "identity"
        self.json = {"as_json": True} if self.endpoint.protocol == "grpc" else {}
        self.metrics_url = options.metrics_url
        self.rng = np.random.default_rng(0)

    async def _config(self, client: Any, name: str) -> dict[str, Any]:
        try:
            raw = await client.get_model_config(name, headers=self.headers, **self.json)
        except Exception as exc:  # noqa: BLE001 - reported as a profile error
            raise PerfError(f"model '{name}': cannot read its config ({exc})") from None
        return unwrap_config(self.endpoint.protocol, raw)

    async def _composing(self, client: Any, config: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for step in config.get("ensemble_scheduling", {}).get("step", []):
            sub = await self._config(client, step["model_name"])
            names += (
                await self._composing(client, sub)
                if sub.get("platform") == "ensemble"
                else [step["model_name"]]
            )
        return names

    async def _snapshot(self, client: Any) -> Snapshot:
        return snapshot(
            dict(await client.get_inference_statistics("", headers=self.headers, **self.json))
        )

    async def _steps(self, model: str, progress: Callable[[str], None]) -> Counters:
        """The model's step counters; {} (and no further scrapes) when the endpoint is away."""
        if self.metrics_url is None:
            return {}
        try:
            return await asyncio.to_thread(scrape, self.metrics_url, model)
        except PerfError as exc:
            progress(f"  no per-step times: {exc} (--metrics-url names the endpoint)")
            self.metrics_url = None
            return {}

    async def run(self, progress: Callable[[str], None] = lambda _: None) -> list[LevelResult]:
        client = self.mod.InferenceServerClient(self.endpoint.address)
        regions: list[str] = []
        try:
            config = await self._config(client, self.options.model)
            info = ModelInfo.from_config(self.options.model, config)
            if info.max_batch_size and self.options.batch_size > info.max_batch_size:
                raise PerfError(
                    f"-b {self.options.batch_size} is larger than model "
                    f"'{info.name}' max_batch_size {info.max_batch_size}"
                )
            if not info.max_batch_size and self.options.batch_size != 1:
                raise PerfError(f"model '{info.name}' does not batch; use -b 1")
            composing = await self._composing(client, config)
            if self.options.batches:
                requests = list(self.options.batches)
            else:
                samples = input_data.load(self.options.input_data, info, self.options.shapes)
                requests = [
                    input_data.batch(s, self.options.batch_size, info.max_batch_size > 0)
                    for s in samples
                ]
            if self.options.transport == "raw" and self.endpoint.protocol == "grpc":
                self.raw = RawGrpc(self.endpoint.address, self.options.timeout_s, self.headers)
            elif self.options.transport == "raw":
                host, _, port = self.endpoint.address.rpartition(":")
                self.raw = RawHttp(host, int(port), self.options.timeout_s)
            prepared = await self._prepare(client, info, requests, regions)
            results = []
            for load in self.options.loads:
                results.append(await self._level(client, info, prepared, composing, load, progress))
            return results
        finally:
            for name in regions:  # best effort on the way out
                with contextlib.suppress(Exception):
                    await client.unregister_system_shared_memory(name, headers=self.headers)
            self._destroy_regions()
            if self.raw is not None:
                await self.raw.close()
            await client.close()

    async def _prepare(
        self, client: Any, info: ModelInfo, requests: list[dict[str, Any]], regions: list[str]
    ) -> list[Any]:
        """Per sample, the request to send: tritonclient inputs, or the raw transport's bytes.
        Both are prepared once and reused, as perf_analyzer prepares its requests."""
        dtypes = {s.name: s.dtype for s in info.inputs}
        prepared: list[Any] = []
        for i, arrays in enumerate(requests):
            placed = await self._place(client, arrays, i, regions)
            outputs = [o.name for o in info.outputs]
            shm = {n: (r, b) for n, (r, b, _) in placed.items()}
            if isinstance(self.raw, RawGrpc):
                request: Any = raw_grpc.build_request(info.name, arrays, dtypes, outputs, shm)
            elif self.raw is not None:
                request = raw_http.build_request(
                    info.name, self.endpoint.address, arrays, dtypes, outputs, self.headers, shm
                )
            elif placed:
                request = []
                for name, (region, size, shape) in placed.items():
                    tensor = self.mod.InferInput(name, shape, dtypes[name])
                    tensor.set_shared_memory(region, size)
                    request.append(tensor)
            else:
                request = infer_inputs(self.mod, arrays, dtypes)
            prepared.append(request)
        return prepared

    async def _place(
        self, client: Any, arrays: dict[str, Any], index: int, regions: list[str]
    ) -> dict[str, tuple[str, int, list[int]]]:
        """With --shared-memory system: copy the sample into regions registered once."""
        if self.options.shared_memory != "system":
            return {}
        from tritonpipe.client.shm import SharedMemoryPool

        pool = SharedMemoryPool(prefix=f"tritonpipe_perf_{id(self):x}_{index}")
        self._handles.append(pool)
        placed = {}
        for name, array in arrays.items():
            region, size, _ = pool.place(name, array)
            await client.register_system_shared_memory(
                region.name, pool.key(region), region.size, headers=self.headers
            )
            regions.append(region.name)
            placed[name] = (region.name, size, list(array.shape))
        return placed

    def _destroy_regions(self) -> None:
        for pool in self._handles:
            pool.destroy()

    def _blocking(self) -> BlockingH2Grpc | BlockingHttp | None:
        """Threads for concurrency mode on the raw transport (see tritonpipe.client.blocking)."""
        if self.raw is None or not self.options.threads:
            return None
        if isinstance(self.raw, RawGrpc):
            return BlockingH2Grpc(self.endpoint.address, self.options.timeout_s, self.headers)
        host, _, port = self.endpoint.address.rpartition(":")
        return BlockingHttp(host, int(port), self.options.timeout_s)

    async def _one(self, client: Any, info: ModelInfo, request: Any, done: list[_Done]) -> None:
        start = time.perf_counter()
        error = None
        send = recv = 0.0
        try:
            if self.raw is not None:
                send, recv, error = await self.raw.infer(request)
            else:
                kwargs: dict[str, Any] = {"headers": self.infer_headers}
                if self.endpoint.protocol == "grpc":
                    kwargs["client_timeout"] = self.options.timeout_s
                result = await asyncio.wait_for(
                    client.infer(info.name, request, **kwargs), self.options.timeout_s
                )
                before_recv = time.perf_counter()
                for spec in info.outputs:
                    result.as_numpy(spec.name)
                recv = time.perf_counter() - before_recv
        except Exception as exc:  # noqa: BLE001 - counted as a failed request
            error = str(exc) or type(exc).__name__
        end = time.perf_counter()
        done.append(_Done(end - start, send, recv, error))

    async def _level(
        self,
        client: Any,
        info: ModelInfo,
        prepared: list[Any],
        composing: list[str],
        load: float,
        progress: Callable[[str], None],
    ) -> LevelResult:
        done: list[_Done] = []
        stop = asyncio.Event()
        cycle = itertools.cycle(prepared)
        tasks: set[asyncio.Task[None]] = set()

        async def worker() -> None:
            while not stop.is_set():
                await self._one(client, info, next(cycle), done)
                # A request that fails before awaiting anything (a client raising at once) never
                # yields: without this the windows' timer would never run again.
                await asyncio.sleep(0)

        async def scheduler() -> None:
            next_at = time.perf_counter()
            while not stop.is_set():
                gap = (
                    1 / load
                    if self.options.distribution == "constant"
                    else self.rng.exponential(1 / load)
                )
                next_at += gap
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                if stop.is_set():  # the last window ended while this request waited its turn
                    break
                task = asyncio.create_task(self._one(client, info, next(cycle), done))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        label = "concurrency" if self.options.mode == "concurrency" else "request rate"
        blocking = self._blocking() if self.options.mode == "concurrency" else None
        threads = _Threads(blocking, prepared, int(load), done) if blocking else None
        drivers = []
        if threads is None:
            drivers = (
                [asyncio.create_task(worker()) for _ in range(int(load))]
                if self.options.mode == "concurrency"
                else [asyncio.create_task(scheduler())]
            )
        snaps = [await self._snapshot(client)]
        steps = [await self._steps(info.name, progress)]
        scraped = [time.perf_counter()]
        windows: list[tuple[float, float, list[_Done]]] = []
        throughputs: list[float] = []
        latencies: list[float] = []
        cursor, stable = 0, False
        for trial in range(1, self.options.max_trials + 1):
            t0 = time.perf_counter()
            await asyncio.sleep(self.options.measurement_interval_ms / 1000)
            t1 = time.perf_counter()
            snaps.append(await self._snapshot(client))
            steps.append(await self._steps(info.name, progress))
            scraped.append(time.perf_counter())
            window = done[cursor:]
            cursor += len(window)  # threads may append between the two
            windows.append((t0, t1, window))
            ok = [d for d in window if d.error is None]
            throughputs.append(len(ok) * self.options.batch_size / (t1 - t0))
            latencies.append(self._stability_latency(ok))
            progress(
                f"  {label} {load:g}: window {trial}: {throughputs[-1]:.1f} infer/s, "
                f"latency {latencies[-1] * 1e6:.0f} us, {len(window) - len(ok)} errors"
            )
            if is_stable(throughputs, latencies, self.options.stability_percentage):
                stable = True
                break
        last = windows[-WINDOWS:]
        start = len(steps) - len(last) - 1
        await self._hold_for_steps(info.name, progress, steps, scraped, start)
        stop.set()
        await asyncio.gather(*drivers, *tasks, return_exceptions=True)
        if threads is not None:
            await threads.stop()
        if not stable:
            progress(
                f"  {label} {load:g}: not stable within {self.options.max_trials} windows "
                f"(+-{self.options.stability_percentage:g}%); reporting the last {WINDOWS}"
            )
        merged = [d for _, _, w in last for d in w]
        seconds = sum(t1 - t0 for t0, t1, _ in last)
        server = delta(snaps[-len(last) - 1], snaps[-1], composing or [info.name])
        parts = {m: delta(snaps[-len(last) - 1], snaps[-1], [m]) for m in composing}
        errors = [d for d in merged if d.error is not None]
        ok = [d for d in merged if d.error is None]
        if not ok:
            raise PerfError(
                f"model '{info.name}' at {label} {load:g}: every request failed; first "
                f"error: {errors[0].error if errors else 'no requests completed'}"
            )
        row = self._row(load, ok, seconds, server)
        comp_rows = {m: _server_row(load, t, seconds) for m, t in parts.items()}
        step_rows = (
            step_delta(steps[start], steps[-1], scraped[-1] - scraped[start]) if steps[-1] else []
        )
        return LevelResult(
            row,
            comp_rows,
            stable,
            len(merged),
            len(errors),
            errors[0].error if errors else None,
            step_rows,
            tuple(d.latency for d in ok),
            server,
            seconds,
            tuple(_p99([d.latency for d in w if d.error is None]) for _, _, w in last),
        )

    async def _hold_for_steps(
        self,
        model: str,
        progress: Callable[[str], None],
        steps: list[Counters],
        scraped: list[float],
        start: int,
    ) -> None:
        """Short windows: keep the load on until the step counters scraped since ``start`` span
        MIN_STEP_SPAN_S, then scrape once more (a model without step counters is not kept
        waiting)."""
        held = scraped[-1] - scraped[start]
        if steps[-1] and held < self.MIN_STEP_SPAN_S:
            await asyncio.sleep(self.MIN_STEP_SPAN_S - held)
            steps.append(await self._steps(model, progress))
            scraped.append(time.perf_counter())

    def _stability_latency(self, ok: list[_Done]) -> float:
        if not ok:
            return 0.0
        values = [d.latency for d in ok]
        if self.options.percentile is not None:
            return float(np.percentile(values, self.options.percentile))
        return float(np.mean(values))

    def _row(self, load: float, ok: list[_Done], seconds: float, server: ServerTimes) -> ResultRow:
        latency = np.array([d.latency for d in ok]) * 1e6
        send = float(np.mean([d.send for d in ok]) * 1e6)
        recv = float(np.mean([d.recv for d in ok]) * 1e6)
        p50, p90, p95, p99 = (int(v) for v in np.percentile(latency, [50, 90, 95, 99]))
        network = max(0, round(float(latency.mean()) - send - recv - server.total_us))
        return ResultRow(
            load=load,
            throughput=round(len(ok) * self.options.batch_size / seconds, 3),
            client_send_us=round(send),
            network_us=network,
            server_queue_us=server.queue_us,
            server_input_us=server.input_us,
            server_infer_us=server.infer_us,
            server_output_us=server.output_us,
            client_recv_us=round(recv),
            p50_us=p50,
            p90_us=p90,
            p95_us=p95,
            p99_us=p99,
        )


class _Threads:
    """Concurrency mode's blocking workers: ``count`` threads, each sending the prepared
    requests in turn (from its own place in the list) and recording each one it completes."""

    def __init__(
        self,
        transport: BlockingH2Grpc | BlockingHttp,
        prepared: list[Any],
        count: int,
        done: list[_Done],
    ) -> None:
        self.transport, self.done = transport, done
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._work,
                args=(
                    itertools.cycle(prepared[i % len(prepared) :] + prepared[: i % len(prepared)]),
                ),
                daemon=True,
            )
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self, requests: itertools.cycle[Any]) -> None:
        while not self.halt.is_set():
            start = time.perf_counter()
            send, recv, error = self.transport.infer(next(requests))
            self.done.append(_Done(time.perf_counter() - start, send, recv, error))

    async def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            await asyncio.to_thread(thread.join)
        self.transport.close()


def _server_row(load: float, times: ServerTimes, seconds: float) -> ResultRow:
    """A composing model's row: its own throughput and server columns; no client columns."""
    return ResultRow(
        load=load,
        throughput=round(times.inferences / seconds, 3),
        client_send_us=0,
        network_us=0,
        server_queue_us=times.queue_us,
        server_input_us=times.input_us,
        server_infer_us=times.infer_us,
        server_output_us=times.output_us,
        client_recv_us=0,
        p50_us=0,
        p90_us=0,
        p95_us=0,
        p99_us=0,
    )
