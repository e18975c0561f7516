"""Locust users for Triton: ``TritonHttpUser`` and ``TritonGrpcUser``.

    locust -f tritonpipe/perf/locustfile.py TritonGrpcUser --host grpc://127.0.0.1:8001 \
        --model digits --input-data pngs.json

Options may also come from the environment (TRITONPIPE_MODEL, TRITONPIPE_INPUT_DATA,
TRITONPIPE_BATCH_SIZE, TRITONPIPE_SHAPE). gRPC calls run on gevent's thread pool (gRPC's own
gevent mode hangs here) and fire locust's request events, so statistics and the web UI work.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from locust import User, events, task

from tritonpipe.client.checks import ModelInfo
from tritonpipe.client.protocol import Endpoint, infer_inputs, module, unwrap_config
from tritonpipe.perf import input_data


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: Any) -> None:
    parser.add_argument("--model", env_var="TRITONPIPE_MODEL", default="", help="Model to infer")
    parser.add_argument(
        "--input-data",
        env_var="TRITONPIPE_INPUT_DATA",
        default="random",
        help="zero, random or a perf_analyzer JSON file",
    )
    parser.add_argument("--batch-size", env_var="TRITONPIPE_BATCH_SIZE", type=int, default=1)
    parser.add_argument(
        "--shape",
        env_var="TRITONPIPE_SHAPE",
        default="",
        help="NAME:D1,D2 for dynamic dims, several separated by spaces",
    )


class _TritonUser(User):
    abstract = True
    protocol = "http"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        endpoint = Endpoint.parse(self.host or "", self.protocol)
        self.model = options.model
        self.client = module(endpoint.protocol, asyncio=False).InferenceServerClient(
            endpoint.address
        )
        json_kw = {"as_json": True} if endpoint.protocol == "grpc" else {}
        config = unwrap_config(
            endpoint.protocol,
            self._blocking(lambda: self.client.get_model_config(self.model, **json_kw)),
        )
        info = ModelInfo.from_config(self.model, config)
        shapes = input_data.parse_shapes(options.shape.split()) if options.shape else {}
        samples = input_data.load(options.input_data, info, shapes)
        mod = module(endpoint.protocol, asyncio=False)
        dtypes = {s.name: s.dtype for s in info.inputs}
        self.requests: Iterator[list[Any]] = itertools.cycle(
            [
                infer_inputs(
                    mod, input_data.batch(s, options.batch_size, info.max_batch_size > 0), dtypes
                )
                for s in samples
            ]
        )

    def _blocking(self, call: Callable[[], Any]) -> Any:
        return call()

    def on_stop(self) -> None:
        self.client.close()

    @task
    def infer(self) -> None:
        inputs = next(self.requests)
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            self._blocking(lambda: self.client.infer(self.model, inputs))
        except Exception as exc:  # noqa: BLE001 - reported to locust as a failure
            error = exc
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type=self.protocol,
            name=self.model,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=error,
            context={},
        )


class TritonHttpUser(_TritonUser):
    """HTTP through tritonclient.http, whose geventhttpclient is native to locust."""

    protocol = "http"


class TritonGrpcUser(_TritonUser):
    """gRPC through tritonclient.grpc; each blocking call runs on gevent's thread pool."""

    protocol = "grpc"

    def _blocking(self, call: Callable[[], Any]) -> Any:
        import gevent

        return gevent.get_hub().threadpool.apply(call)
