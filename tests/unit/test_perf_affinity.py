"""CPU lists for --client-cpus / --server-cpus: parsing, clear errors, and pinning that this
process's threads and children inherit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tritonpipe.errors import PerfError
from tritonpipe.perf.affinity import (
    available_cpus,
    call_pinned,
    format_cpus,
    parse_cpus,
    pin,
    pin_tree,
    pinned,
)

CPUS = sorted(available_cpus())
two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs two usable CPUs")


def _child_cpus() -> list[int]:
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [int(c) for c in done.stdout.strip("[]\n").split(",") if c.strip()]


@two_cpus
def test_lists_ranges_and_single_cpus() -> None:
    a, b = CPUS[0], CPUS[1]
    assert parse_cpus(str(a)) == {a}
    assert parse_cpus(f"{a},{b}") == {a, b}
    assert parse_cpus(f" {b} , {a} ") == {a, b}
    if b == a + 1:
        assert parse_cpus(f"{a}-{b}") == {a, b}
    assert parse_cpus(f"{a},{a}") == {a}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected a CPU list"),
        ("x", "'x' is not a CPU number or range"),
        ("0,", "'' is not a CPU number or range"),
        ("0-", "'0-' is not a CPU number or range"),
        ("1-0", "range '1-0' ends before it starts"),
        ("0-1-2", "'0-1-2' is not a CPU number"),
        ("-1", "'-1' is not a CPU number"),
        ("0.5", "'0.5' is not a CPU number"),
    ],
)
def test_malformed_lists_name_the_option_and_the_item(text: str, says: str) -> None:
    with pytest.raises(PerfError) as caught:
        parse_cpus(text, "--client-cpus")
    assert str(caught.value).startswith(f"--client-cpus {text!r}:")
    assert says in str(caught.value)


def test_a_cpu_this_process_cannot_use_is_refused_with_the_usable_list() -> None:
    beyond = max(CPUS) + 1
    with pytest.raises(PerfError) as caught:
        parse_cpus(f"{CPUS[0]},{beyond}", "--server-cpus")
    message = str(caught.value)
    assert f"CPU {beyond} is not available" in message
    assert f"it may use {format_cpus(CPUS)}" in message
    assert message.startswith("--server-cpus")


def test_format_is_the_shortest_list_that_parses_back() -> None:
    assert format_cpus([5, 0, 2, 1]) == "0-2,5"
    assert format_cpus([3]) == "3"
    assert format_cpus([0, 1, 3, 4, 7]) == "0-1,3-4,7"
    assert parse_cpus(format_cpus(CPUS)) == set(CPUS)


@two_cpus
def test_pinned_moves_running_threads_and_children_then_restores() -> None:
    started, release = threading.Event(), threading.Event()
    seen: dict[str, set[int]] = {}

    def worker() -> None:
        started.set()
        release.wait(10)
        seen["thread"] = set(os.sched_getaffinity(0))

    thread = threading.Thread(target=worker)
    thread.start()  # already running when the process is pinned
    started.wait(10)
    try:
        with pinned({CPUS[1]}):
            assert available_cpus() == {CPUS[1]}
            assert _child_cpus() == [CPUS[1]]  # a child started inside inherits the CPU
            release.set()
            thread.join(10)
    finally:
        release.set()
        thread.join(10)
    assert seen["thread"] == {CPUS[1]}
    assert available_cpus() == set(CPUS)
    assert _child_cpus() == CPUS


def test_pinned_none_changes_nothing_and_empty_lists_are_refused() -> None:
    with pinned(None):
        assert available_cpus() == set(CPUS)
    with pytest.raises(PerfError, match="empty CPU list"):
        pin(set())


def test_profile_client_cpus_is_checked_before_anything_runs() -> None:
    profile = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", "-m", "digits"]
    bad = subprocess.run([*profile, "--client-cpus", "0-x"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "--client-cpus '0-x': '0-x' is not a CPU number" in bad.stderr
    assert "Traceback" not in bad.stderr and "profiling" not in bad.stdout
    # A good list is applied and said; no server answers on port 9, so the run then fails.
    cpu = str(CPUS[-1])
    good = subprocess.run(
        [*profile, "--client-cpus", cpu, "-u", "127.0.0.1:9", "--metrics-url", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"on CPUs {cpu}" in good.stdout
    assert good.returncode == 1 and "Traceback" not in good.stderr


@two_cpus
def test_call_pinned_pins_what_the_call_starts_and_leaves_this_thread_alone() -> None:
    seen: list[set[int]] = []

    def later() -> None:  # a thread the call leaves running, as a server's supervisor
        seen.append(set(os.sched_getaffinity(0)))

    def start() -> list[int]:
        threading.Timer(0.05, later).start()
        return _child_cpus()

    assert call_pinned({CPUS[0]}, start) == [CPUS[0]]
    assert available_cpus() == set(CPUS)
    for _ in range(100):
        if seen:
            break
        threading.Event().wait(0.05)
    assert seen == [{CPUS[0]}]
    with pytest.raises(ZeroDivisionError):
        call_pinned({CPUS[0]}, lambda: 1 // 0)


@two_cpus
def test_pin_tree_pins_a_running_process_its_children_and_their_threads() -> None:
    code = (
        "import subprocess, sys, threading, time; "
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print(c.pid, flush=True); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert sorted(pin_tree(parent.pid, {CPUS[1]})) == sorted([parent.pid, child])
        for pid in (parent.pid, child):
            for task in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(task)) == {CPUS[1]}, (pid, task)
        assert available_cpus() == set(CPUS)  # the caller is left alone
    finally:
        if child:
            os.kill(child, 9)
        parent.kill()
        parent.wait()
    with pytest.raises(PerfError, match="is not running"):
        pin_tree(parent.pid, {CPUS[1]})
