"""Named kill points for fault injection (bench/faults.py, the fault tests).

A kill at a random moment rarely lands inside the few microseconds between two renames, so
the windows that matter are named: `failpoint("data.swap")` sits between the two renames of
data/'s swap, and so on. Unless SEGEN_FAILPOINT names it, a failpoint is one dictionary
lookup and does nothing. With SEGEN_FAILPOINT=NAME (or NAME:N, the N-th time it is passed)
the process kills itself with SIGKILL there: no cleanup handler, finally block or atexit
runs, exactly as when the machine loses power or the OOM killer strikes.

Every name in use is in FAILPOINTS, so the benchmark can enumerate them.
"""
from __future__ import annotations

import os
import signal

ENV = "SEGEN_FAILPOINT"
FAILPOINTS = {
    "store.publish": "a stage's outputs staged and their _meta.json written, not yet renamed",
    "pointer.write": "a pointer's temporary file written, not yet renamed over the pointer",
    "data.swap": "the previous data/ renamed aside, the new one not yet in place",
    "data.record": "the new data/ in place, `dvc add` not yet run",
    "data.push": "data.dvc written by `dvc add`, `dvc push` not yet run",
    "checkpoint.write": "a checkpoint's temporary file saved, not yet renamed",
    "register.run": "a registration's MLflow run logged (params, metrics), its model not yet",
    "register.version": "the registered version created with its tags, the champion not claimed",
    "promote.alias": "the champion alias moved, its history event not yet completed",
    "ddp.rank1_epoch": "rank 1 of a multi-process training at an epoch's end, in the group's "
                       "first attempt only (its restart resumes from the last checkpoint)",
}
_passes: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill this process here if SEGEN_FAILPOINT names this point (and this pass)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
