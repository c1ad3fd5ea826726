"""The promotion and data locks (filelock.FileLock, a kernel flock): a second holder waits
then fails with the holder named, a lock held by a killed process is free at once, and the
data lock waits (saying so) until the holder lets go."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segen.project import Project
from segen.registry.promotion.lock import PromotionBusy, model_lock

_HOLD = {
    "model": "from segen.registry.promotion.lock import model_lock as hold\n"
             "lock = hold(Project.at(root), 'm', 5.0)",
    "data": "from segen.data.lock import data_lock as hold\n"
            "lock = hold(Project.at(root), 'holder')",
}


def _holder(root: Path, which: str, seconds: float) -> subprocess.Popen:
    """A process that takes the lock, says "held", and keeps it for `seconds`."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from segen.project import Project
        root = Path({str(root)!r})
    """) + _HOLD[which] + textwrap.dedent(f"""
        with lock:
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_waiting_promotion_names_the_holder_then_gives_up(tmp_path):
    holder = _holder(tmp_path, "model", 30)
    try:
        start = time.monotonic()
        with pytest.raises(PromotionBusy, match=rf"\(pid {holder.pid} user .+ since .+\) "
                                                r"still holds .*m\.lock after 0\.5 s"):
            with model_lock(Project.at(tmp_path), "m", 0.5):
                pass
        assert time.monotonic() - start >= 0.5
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("which", ["model", "data"])
def test_a_lock_held_by_a_killed_process_is_free(tmp_path, which):
    from segen.data.lock import data_lock

    holder = _holder(tmp_path, which, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    project, start = Project.at(tmp_path), time.monotonic()
    lock = (model_lock(project, "m", 2.0) if which == "model" else data_lock(project, "me"))
    with lock:
        assert time.monotonic() - start < 1.0  # not waiting out a stale holder


def test_the_data_lock_waits_for_its_holder_and_says_so(tmp_path, capsys):
    from segen.data.lock import data_lock

    holder, start = _holder(tmp_path, "data", 1.5), time.monotonic()
    try:
        with data_lock(Project.at(tmp_path), "segen data add"):
            assert time.monotonic() - start > 1.0  # only once the holder let go
        assert "segen data add: waiting for another segen process" in capsys.readouterr().err
        with data_lock(Project.at(tmp_path), "again"):  # released: free at once
            pass
        assert "waiting" not in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
