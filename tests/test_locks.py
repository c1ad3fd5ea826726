"""The promotion and project locks (filelock.FileLock, a kernel flock): a second holder waits
then fails with the holder named, a lock held by a killed process is free at once, the
project lock waits (saying so) until the holder lets go, or with --no-wait fails at once, and
read-only commands never take it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import segen_cli

from segen.locking import holder_of, lock_path, project_lock
from segen.project import Project
from segen.registry.promotion.lock import PromotionBusy, model_lock

_HOLD = {
    "model": "from segen.registry.promotion.lock import model_lock as hold\n"
             "lock = hold(Project.at(root), 'm', 5.0)",
    "project": "from segen.locking import project_lock as hold\n"
               "lock = hold(Project.at(root), 'the holder')",
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


@pytest.mark.parametrize("which", ["model", "project"])
def test_a_lock_held_by_a_killed_process_is_free(tmp_path, which):
    holder = _holder(tmp_path, which, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    project, start = Project.at(tmp_path), time.monotonic()
    lock = (model_lock(project, "m", 2.0) if which == "model"
            else project_lock(project, "me", wait=False))
    with lock:
        assert time.monotonic() - start < 1.0  # not waiting out a stale holder


def test_a_second_writer_waits_for_the_holder_and_says_so(tmp_path, capsys):
    holder, start = _holder(tmp_path, "project", 1.5), time.monotonic()
    try:
        with project_lock(Project.at(tmp_path), "segen data add"):
            assert time.monotonic() - start > 1.0  # only once the holder let go
        err = capsys.readouterr().err
        assert f"segen data add: waiting for another segen command that writes to this " \
               f"project (the holder, pid {holder.pid}, since " in err
        with project_lock(Project.at(tmp_path), "again"):  # released: free at once
            pass
        assert "waiting" not in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_the_project_lock_is_reentrant_within_a_process(tmp_path):
    project = Project.at(tmp_path)
    with project_lock(project, "segen retrain", wait=False):
        with project_lock(project, "segen-retrain flow", wait=False):  # the flow inside
            pass
        holder = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(tmp_path)],
                                capture_output=True, text=True)
        assert holder.returncode == 75, holder.stderr  # still held by the outer block
    again = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(tmp_path)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


_TRY_LOCK = """
import sys
from segen.locking import ProjectBusy, project_lock
from segen.project import Project
try:
    with project_lock(Project.at(sys.argv[1]), "probe", wait=False):
        pass
except ProjectBusy:
    sys.exit(75)
"""


def test_writers_fail_at_once_with_no_wait_and_readers_never_block(tiny_project):
    holder = _holder(tiny_project, "project", 120)
    try:
        for command in (["run"], ["stage", "preprocess"], ["data", "add", "x", "y"],
                        ["data", "import-pairs", "x", "y"], ["retrain"],
                        ["promote", "segen-unet"], ["rollback", "segen-unet", "--reason", "r"]):
            proc = segen_cli(*command, "--no-wait", cwd=tiny_project, timeout=120)
            assert proc.returncode == 75, (command, proc.stderr)
            assert f"another segen command is writing to this project (the holder, pid " \
                   f"{holder.pid}" in proc.stderr and "--wait" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr
        runs = segen_cli("runs", "--json", cwd=tiny_project, timeout=120)
        assert runs.returncode == 0 and json.loads(runs.stdout) == [], runs.stderr
        assert holder.poll() is None  # the reader ran while the writer still held the lock
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_running_pipeline_keeps_other_writers_out(tiny_project):
    """Two real segen commands forced to overlap: the second starts only once the first
    holds the lock (its name is in the lock file), so it must meet the lock."""
    run = subprocess.Popen([sys.executable, "-m", "segen.cli.main", "run"], cwd=tiny_project,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(lock_path(Project.at(tiny_project)), f"segen run, pid {run.pid}", run)
        second = segen_cli("data", "generate", "--force", "--no-wait", cwd=tiny_project)
        assert second.returncode == 75, second.stderr
        assert f"(segen run, pid {run.pid}, since" in second.stderr
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, err[-3000:]
    finally:
        run.kill()
        run.wait()
    waited = segen_cli("data", "generate", "--force", cwd=tiny_project)  # free again
    assert waited.returncode == 0 and "waiting" not in waited.stderr, waited.stderr


def _wait_for_holder(path: Path, holder: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if holder_of(path).startswith(holder):
            return
        time.sleep(0.05)
    raise AssertionError(f"{holder} never took {path} (exit {proc.poll()})")
