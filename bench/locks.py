"""The project lock's two latencies: how long a waiting writer takes to start once the
holder finishes, and how long it takes to notice that the holder was killed.

A holder process takes segen.locking.project_lock, then either exits normally (printing the
moment it lets go) or is SIGKILLed by this script at a recorded moment; this process waits
on the same lock (wait=True, polling every segen.locking._POLL_S) and records when it gets
it. Baseline: an uncontended acquire and release of the same lock, in the same run.

Usage:  .venv/bin/python bench/locks.py [--repeats 10]
Writes bench/out/locks.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fresh_dir, median, write_json  # noqa: E402

from segen.locking import project_lock  # noqa: E402
from segen.project import Project  # noqa: E402

_HOLDER = """
import sys, time
from segen.locking import project_lock
from segen.project import Project
with project_lock(Project.at(sys.argv[1]), "bench holder"):
    print("held", flush=True)
    sys.stdin.readline()  # hold until told to go (or killed)
    print(repr(time.time()), flush=True)
"""


def _start_holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _wait_for_lock(root: Path) -> float:
    with contextlib.redirect_stderr(io.StringIO()):  # the "waiting for ..." lines
        with project_lock(Project.at(root), "bench waiter"):
            return time.time()


def handoff(root: Path) -> float:
    """Seconds from the holder letting go to the waiter holding the lock."""
    holder = _start_holder(root)
    import threading

    got: list[float] = []
    waiter = threading.Thread(target=lambda: got.append(_wait_for_lock(root)))
    waiter.start()
    time.sleep(0.3)  # the waiter is polling
    holder.stdin.write("go\n")
    holder.stdin.flush()
    released = float(holder.stdout.readline())
    waiter.join()
    holder.wait()
    return got[0] - released


def dead_holder(root: Path) -> float:
    """Seconds from SIGKILL of the holder to the waiter holding the lock."""
    holder = _start_holder(root)
    import threading

    got: list[float] = []
    waiter = threading.Thread(target=lambda: got.append(_wait_for_lock(root)))
    waiter.start()
    time.sleep(0.3)
    killed = time.time()
    os.kill(holder.pid, signal.SIGKILL)
    waiter.join()
    holder.wait()
    return got[0] - killed


def uncontended(root: Path) -> float:
    start = time.perf_counter()
    with project_lock(Project.at(root), "bench"):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    root = fresh_dir("segen-bench-locks-")
    base = median(uncontended(root) for _ in range(args.repeats))
    waits = [handoff(root) for _ in range(args.repeats)]
    deads = [dead_holder(root) for _ in range(args.repeats)]
    result = {"uncontended_s": base, "handoff_median_s": median(waits),
              "handoff_max_s": max(waits), "dead_holder_median_s": median(deads),
              "dead_holder_max_s": max(deads), "repeats": args.repeats}
    print(f"uncontended acquire+release      {base * 1000:8.2f} ms   (baseline)")
    print(f"holder done -> waiter holds      {median(waits) * 1000:8.1f} ms median, "
          f"{max(waits) * 1000:.1f} max   ({median(waits) / base:.0f}x the baseline)")
    print(f"holder killed -> waiter holds    {median(deads) * 1000:8.1f} ms median, "
          f"{max(deads) * 1000:.1f} max   ({median(deads) / base:.0f}x the baseline)")
    print(f"wrote {write_json('locks', result)}")


if __name__ == "__main__":
    main()
