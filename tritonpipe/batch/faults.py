"""A fault point inside a unit's commit, for tests of what a failed or killed commit leaves.

``TRITONPIPE_BATCH_FAULT=POINT:N:ACTION`` fails the Nth commit of this process at ``POINT``
(``file``: after its first data file is in place; ``ledger``: after every data file, before the
ledger marker) by ``ACTION`` (``raise``: an OSError, as a failed write; ``kill``: SIGKILL).
Under ``--engine spark`` the commits run in the driver, after its rejects files took the
pipeline's refusals, so a kill there leaves what a killed driver leaves. Unset,
:func:`fault_point` does nothing.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "TRITONPIPE_BATCH_FAULT"
_commits = 0


def commit_started() -> None:
    global _commits
    _commits += 1


def fault_point(point: str) -> None:
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    where, _, rest = wanted.partition(":")
    count, _, action = rest.partition(":")
    if where != point or str(_commits) != count:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(f"{VARIABLE}: injected write failure at {point} of commit {count}")
