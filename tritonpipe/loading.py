"""Import a function named as ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tritonpipe.errors import SpecError


def split_ref(ref: str) -> tuple[str, str]:
    """Split ``module_or_file:function`` into its two parts."""
    module, sep, func = ref.rpartition(":")
    if not sep or not module or not func:
        raise SpecError(
            f"{ref!r}: expected 'path/to/file.py:function' or 'package.module:function'"
        )
    return module, func


def load_module(module: str, base_dir: Path | None = None) -> ModuleType:
    """Import a module by dotted name, or from a ``.py`` file (relative to ``base_dir``)."""
    if module.endswith(".py") or "/" in module:
        path = Path(module)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise SpecError(f"{module!r}: file {path} not found")
        name = f"_tritonpipe_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"{path}: cannot be imported as Python")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        # The user's file may import its neighbours.
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(mod)
        finally:
            sys.path.remove(str(path.parent.resolve()))
        return mod
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SpecError(f"{module!r}: cannot import ({exc})") from exc


def load_function(ref: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """Resolve ``ref`` to a callable, with an error naming what is missing."""
    module, func = split_ref(ref)
    mod = load_module(module, base_dir)
    obj = getattr(mod, func, None)
    if not callable(obj):
        raise SpecError(f"{ref!r}: {module} has no function '{func}'")
    return obj  # type: ignore[no-any-return]
