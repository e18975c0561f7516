"""A worker's Prometheus metrics, on its own registry and (optionally) its own HTTP port."""

from __future__ import annotations

from typing import Any


class Metrics:
    """Lag, events by outcome, batch sizes and end-to-end latency (event time -> written)."""

    def __init__(self, stream: str, port: int | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.stream = stream
        self._lag = Gauge(
            "tritonpipe_stream_lag_records",
            "Events in the stream not yet delivered to the consumer group",
            ["stream"],
            registry=self.registry,
        )
        self._partition_lag = Gauge(
            "tritonpipe_stream_partition_lag_records",
            "Per partition (Kafka): end offset minus the consumer group's committed offset",
            ["stream", "partition"],
            registry=self.registry,
        )
        self._events = Counter(
            "tritonpipe_stream_events",
            "Events handled, by outcome (scored, duplicate, dead_letter, retry)",
            ["stream", "outcome"],
            registry=self.registry,
        )
        self._batch = Histogram(
            "tritonpipe_stream_batch_size",
            "Events per micro-batch",
            ["stream"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self._latency = Histogram(
            "tritonpipe_stream_e2e_seconds",
            "Event timestamp to prediction written",
            ["stream"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.server: Any = None
        if port is not None:
            from prometheus_client import start_http_server

            self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    @property
    def port(self) -> int | None:
        return None if self.server is None else int(self.server.server_port)

    def lag(self, value: int | None) -> None:
        if value is not None:
            self._lag.labels(self.stream).set(value)

    def partition_lag(self, lags: dict[str, int]) -> None:
        for partition, value in lags.items():
            self._partition_lag.labels(self.stream, partition).set(value)

    def events(self, outcome: str, count: int) -> None:
        if count:
            self._events.labels(self.stream, outcome).inc(count)

    def batch(self, size: int) -> None:
        self._batch.labels(self.stream).observe(size)

    def latency(self, seconds: float) -> None:
        self._latency.labels(self.stream).observe(max(seconds, 0.0))

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
