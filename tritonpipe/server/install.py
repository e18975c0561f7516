"""Find the tritonserver that ships in the nvidia-pytriton wheel and make it runnable here."""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.errors import ServerError


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one tritonserver installation."""

    binary: Path
    backends: Path
    libs: Path

    def environment(self) -> dict[str, str]:
        """The server's environment: its shared libraries, and this Python's packages for the
        Python backend (the stub embeds an interpreter that does not know our venv)."""
        env = dict(os.environ)
        # The stub must embed this interpreter's libpython: another build of the same minor
        # version (e.g. the system's) lacks symbols this Python's extension modules need
        # (`import ssl` failed in the stub, and with it redis, Feast and MLflow).
        libdir = (
            sysconfig.get_config_var("LIBDIR")
            if sysconfig.get_config_var("Py_ENABLE_SHARED")
            else None
        )
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(self.libs), libdir, env.get("LD_LIBRARY_PATH")])
        )
        paths = [p for p in sys.path if p and Path(p).is_dir() and "site-packages" in p]
        paths += site.getsitepackages()
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [*dict.fromkeys(paths), env.get("PYTHONPATH")])
        )
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def find_triton() -> TritonInstall:
    """Locate the wheel's server and put the stub for the running Python in its backend folder."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "tritonserver not found: install the server extra (pip install 'tritonpipe[server]', "
            "which brings nvidia-pytriton==0.7.0) or run 'make setup'"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    if not binary.is_file():
        raise ServerError(f"{binary}: missing from the nvidia-pytriton install")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    target = root / "backends" / "python" / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"no Python backend stub for Python {version} in {stub.parent.parent}")
    if not target.is_file() or target.stat().st_size != stub.stat().st_size:
        try:
            shutil.copy2(stub, target)
        except OSError as exc:
            raise ServerError(
                f"cannot install the Python {version} stub into {target}: {exc}"
            ) from exc
    return TritonInstall(binary=binary, backends=root / "backends", libs=libs)
