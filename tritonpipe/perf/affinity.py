"""CPU pinning for load tests on a small machine: a load generator and the server it measures
compete for the same cores, and how the kernel shares them depends on how many threads each
side runs. Pinning each side to its own CPUs (``--client-cpus 0``, the server on ``1``) gives
two load generators the same CPU, so their numbers compare.

CPU lists are written as ``taskset -c`` takes them: ``0``, ``0,1``, ``0-1``, ``0-2,5``.
Children inherit a process's CPUs, so a process pinned before it starts a server or
perf_analyzer pins them too.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tritonpipe.errors import PerfError

T = TypeVar("T")


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on now."""
    return frozenset(_getaffinity(0))


def parse_cpus(text: str, option: str = "--cpus") -> frozenset[int]:
    """``0``, ``0,1``, ``0-1``, ``0-2,5`` -> the CPU numbers; a :class:`PerfError` naming
    ``option`` when the list is malformed or names a CPU this process cannot use."""
    cpus: set[int] = set()
    if not text.strip():
        raise PerfError(f"{option} '': expected a CPU list such as 0, 0,1 or 0-1")
    for part in text.split(","):
        item = part.strip()
        first, dash, last = item.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise PerfError(
                f"{option} {text!r}: {item!r} is not a CPU number or range (expected e.g. 0, "
                "0,1 or 0-1)"
            ) from None
        if low < 0 or high < 0:
            raise PerfError(f"{option} {text!r}: CPU numbers are >= 0")
        if high < low:
            raise PerfError(f"{option} {text!r}: range {item!r} ends before it starts")
        cpus.update(range(low, high + 1))
    usable = available_cpus()
    missing = sorted(cpus - usable)
    if missing:
        raise PerfError(
            f"{option} {text!r}: CPU {missing[0]} is not available to this process (it may use "
            f"{format_cpus(usable)})"
        )
    return frozenset(cpus)


def format_cpus(cpus: Iterable[int]) -> str:
    """The shortest list ``parse_cpus`` reads back: ``{0, 1, 2, 5}`` -> ``0-2,5``."""
    numbers = sorted(set(cpus))
    parts: list[str] = []
    start = 0
    for i, cpu in enumerate(numbers):
        if i + 1 < len(numbers) and numbers[i + 1] == cpu + 1:
            continue
        low = numbers[start]
        parts.append(str(low) if low == cpu else f"{low}-{cpu}")
        start = i + 1
    return ",".join(parts)


def pin(cpus: Iterable[int], pid: int = 0) -> None:
    """Run process ``pid`` (0: this one), every thread it has now, on ``cpus``; the threads and
    children it starts later inherit them."""
    wanted = frozenset(cpus)
    if not wanted:
        raise PerfError("cannot pin to an empty CPU list")
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        try:
            _setaffinity(tid, wanted)
        except ProcessLookupError:  # a thread that ended since the listing
            continue
        except OSError as exc:
            raise PerfError(
                f"cannot pin process {pid or os.getpid()} to CPUs {format_cpus(wanted)} "
                f"({exc.strerror})"
            ) from None


def pin_tree(pid: int, cpus: Iterable[int]) -> list[int]:
    """Pin process ``pid`` and every descendant it has now (a server's backend stubs), each
    thread of each; returns the pids pinned. Use on a server already running: a process forks
    from whichever thread calls ``Popen`` (tritonpipe's launcher uses one spawner thread for
    the whole process), so inheriting a thread's CPUs is not a way to pin it."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise PerfError(f"cannot pin process {pid}: it is not running") from None
    pinned_pids = []
    for proc in tree:
        try:
            pin(cpus, proc.pid)
        except PerfError:
            if proc.is_running():  # one that ended meanwhile is not an error
                raise
            continue
        pinned_pids.append(proc.pid)
    return pinned_pids


@contextlib.contextmanager
def pinned(cpus: Iterable[int] | None) -> Iterator[None]:
    """This process on ``cpus`` for the block (None: unchanged), then back on the CPUs it had.
    A server or tool started inside the block keeps ``cpus`` after it."""
    if cpus is None:
        yield
        return
    before = available_cpus()
    pin(cpus)
    try:
        yield
    finally:
        pin(before)


def call_pinned(cpus: Iterable[int], call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own on ``cpus``; this thread's CPUs stay as they are.
    What the call starts (processes, and threads such as a server's supervisor, which restarts
    the server from there) keeps ``cpus`` after it returns."""
    wanted = frozenset(cpus)
    if not wanted:
        raise PerfError("cannot pin to an empty CPU list")
    outcome: dict[str, T] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _setaffinity(0, wanted)  # this thread only
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="tritonpipe-pinned", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome["value"]


def _getaffinity(pid: int) -> set[int]:
    get = getattr(os, "sched_getaffinity", None)
    if get is None:
        raise PerfError("CPU pinning needs Linux (os.sched_getaffinity is not available here)")
    return set(get(pid))


def _setaffinity(pid: int, cpus: frozenset[int]) -> None:
    put = getattr(os, "sched_setaffinity", None)
    if put is None:
        raise PerfError("CPU pinning needs Linux (os.sched_setaffinity is not available here)")
    put(pid, cpus)
