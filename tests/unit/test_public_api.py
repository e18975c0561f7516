import subprocess
import sys

import tritonpipe
import tritonpipe.client
import tritonpipe.ensembles
import tritonpipe.export
import tritonpipe.pipeline
import tritonpipe.repository
import tritonpipe.server
import tritonpipe.stream
from tritonpipe.errors import TritonPipeError


def test_public_api() -> None:
    assert tritonpipe.__all__ == [
        "ClientError",
        "DeployError",
        "ExportError",
        "InputError",
        "InvalidArgument",
        "ModelNotFound",
        "ParityError",
        "PerfError",
        "PipelineError",
        "PipelineInputError",
        "RepositoryError",
        "RequestTimeout",
        "ServerError",
        "SpecError",
        "TensorSpec",
        "TritonPipeError",
        "Unauthorized",
        "Unavailable",
        "__version__",
    ]
    assert tritonpipe.client.__all__ == ["AsyncClient", "Client", "ClientOptions", "ModelInfo"]
    assert tritonpipe.export.__all__ == [
        "FORMATS",
        "ExportInput",
        "Manifest",
        "OutputParity",
        "export",
        "parse_export_input",
    ]
    assert tritonpipe.pipeline.__all__ == [
        "Pipeline",
        "PipelineError",
        "PipelineInputError",
        "StepTime",
    ]
    assert tritonpipe.ensembles.__all__ == ["PipelineSpec", "build_repository", "load_spec"]
    assert "validate_repository" in tritonpipe.repository.__all__
    assert tritonpipe.server.__all__ == [
        "TOKEN_HEADER",
        "ServerOptions",
        "TritonInstall",
        "TritonServer",
        "find_triton",
        "serve",
    ]
    assert tritonpipe.stream.__all__ == [
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
    for module in (
        tritonpipe,
        tritonpipe.stream,
        tritonpipe.client,
        tritonpipe.export,
        tritonpipe.ensembles,
        tritonpipe.repository,
        tritonpipe.server,
    ):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_one_exception_root() -> None:
    for name in tritonpipe.__all__:
        obj = getattr(tritonpipe, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, TritonPipeError)


def test_cli_and_client_stay_light() -> None:
    code = (
        "import sys, tritonpipe.cli.main, tritonpipe.client, tritonpipe.stream; "
        "print(','.join(m for m in ('torch', 'onnxruntime', 'onnx', 'redis', 'nats', 'aiokafka') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
