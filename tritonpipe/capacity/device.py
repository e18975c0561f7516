"""Known-answer devices: a simulated accelerator served by Triton's Python backend.

Each execution holds one device for ``A + B x rows`` ms; the device is shared by every instance
and every server that names the same lock file, as instances on one GPU share it. The sleep
does not depend on CPU load, so the device is ground truth for the planner and the sweep on a
machine without a GPU (the Python backend's own overhead around each execute still does).

    write_device(repository, Device(name="dev", a_ms=2, b_ms=0.25, count=2, max_batch_size=8))
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.errors import SpecError

MODEL_FILE = Path(__file__).with_name("device_model.py")


@dataclass(frozen=True, kw_only=True)
class Device:
    """One model on one simulated device: the service time ``a_ms + b_ms x rows`` per execution,
    the instances sharing the device, and the dynamic batcher's knobs."""

    name: str = "device"
    a_ms: float = 2.0
    b_ms: float = 0.25
    count: int = 1
    max_batch_size: int = 8
    max_queue_delay_us: int = 0
    preferred_batch_size: int = 0  # 0: none
    lock: Path | None = None  # default: one file per device name in the temp folder

    def __post_init__(self) -> None:
        if self.a_ms < 0 or self.b_ms < 0 or self.a_ms + self.b_ms <= 0:
            raise SpecError(f"device {self.name}: A and B must be >= 0 and not both 0 ms")
        if self.count < 1 or self.max_batch_size < 1 or self.max_queue_delay_us < 0:
            raise SpecError(f"device {self.name}: count and max_batch_size >= 1, delay >= 0")
        if not 0 <= self.preferred_batch_size <= self.max_batch_size:
            raise SpecError(f"device {self.name}: preferred_batch_size in [0, max_batch_size]")

    def service_ms(self, rows: int) -> float:
        """The time one execution of ``rows`` rows holds the device."""
        return self.a_ms + self.b_ms * rows

    def capacity(self) -> float:
        """Rows per second with the device always busy on full batches."""
        return self.max_batch_size / self.service_ms(self.max_batch_size) * 1000

    @property
    def lock_path(self) -> Path:
        return self.lock or Path(tempfile.gettempdir()) / f"tritonpipe-device-{self.name}.lock"

    def config(self) -> str:
        preferred = (
            f"  preferred_batch_size: [{self.preferred_batch_size}]\n"
            if self.preferred_batch_size
            else ""
        )
        params = {"device.a_ms": self.a_ms, "device.b_ms": self.b_ms, "device.lock": self.lock_path}
        parameters = "".join(
            f'parameters {{\n  key: "{k}"\n  value {{ string_value: "{v}" }}\n}}\n'
            for k, v in params.items()
        )
        return (
            f'name: "{self.name}"\nbackend: "python"\nmax_batch_size: {self.max_batch_size}\n'
            'input { name: "x" data_type: TYPE_FP32 dims: [1] }\n'
            'output { name: "y" data_type: TYPE_FP32 dims: [1] }\n'
            f"instance_group {{\n  count: {self.count}\n  kind: KIND_CPU\n}}\n"
            f"dynamic_batching {{\n{preferred}"
            f"  max_queue_delay_microseconds: {self.max_queue_delay_us}\n}}\n{parameters}"
        )


def write_device(repository: Path, device: Device) -> Path:
    """Write ``device`` as a model folder of ``repository``; returns the folder."""
    folder = repository / device.name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL_FILE, folder / "1" / "model.py")
    (folder / "config.pbtxt").write_text(device.config())
    device.lock_path.touch()
    return folder
