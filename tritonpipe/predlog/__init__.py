"""Prediction logs: one record per prediction (request id, time, pipeline, model version, entity
keys, feature vector, outputs) written to a Parquet folder (journaled before the answer leaves)
or a Redis Stream (queued, off the request path)."""

from tritonpipe.predlog.logger import PredictionLogger
from tritonpipe.predlog.read import read_logs
from tritonpipe.predlog.sinks import ParquetSink, RedisStreamSink, Sink, make_sink

__all__ = ["ParquetSink", "PredictionLogger", "RedisStreamSink", "Sink", "make_sink", "read_logs"]
