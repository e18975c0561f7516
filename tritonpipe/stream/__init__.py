"""Stream inference: workers that score events from a message bus, at least once.

Each worker joins a consumer group (Redis Streams, Kafka) or durable consumer (NATS JetStream),
scores micro-batches with the embedded pipeline (or a Triton server), writes one output per
event id and acknowledges only after writing. Scale by starting more workers; a dead worker's
events are claimed by the others (on Kafka: its partitions move to them).
``tritonpipe stream run job.yaml`` or :func:`build_worker`.
"""

from tritonpipe.stream.bus import Message, Output, Sink, Source
from tritonpipe.stream.config import JobConfig, KafkaBus, NatsBus, RedisBus, load_config
from tritonpipe.stream.runner import build_worker, open_bus, run_until_signalled, status
from tritonpipe.stream.worker import Counts, Worker, decode

__all__ = [
    "Counts",
    "JobConfig",
    "KafkaBus",
    "Message",
    "NatsBus",
    "Output",
    "RedisBus",
    "Sink",
    "Source",
    "Worker",
    "build_worker",
    "decode",
    "load_config",
    "open_bus",
    "run_until_signalled",
    "status",
]
