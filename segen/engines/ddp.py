"""Training across processes: a stage launches torch elastic (`python -m torch.distributed.run
--standalone`) as a subprocess, whose ranks run one entry function of a trainer module.

Why a subprocess and not elastic_launch in the stage: stages run in a flow's thread pool, and
off the main thread elastic_launch installs no signal handlers (orphaned ranks). The launch
passes a JSON file of arguments; every rank runs `python -m segen.engines.ddp <file>`, which
joins the process group (gloo on CPU, NCCL with one GPU per rank) and calls the entry named in
the file. Rank 0's return value comes back to the stage as result.json; a rank that raises
writes its error to errors/, so the stage fails with that rank's message, not a bare exit
status. A rank that dies (a kill, the OOM killer) restarts the whole group, up to
MAX_RESTARTS times; the trainers resume from their last checkpoint.

The stage's thread budget is shared by the ranks (OMP_NUM_THREADS = threads // ranks), so N
ranks never take more cores than the one process would.
"""
from __future__ import annotations

import collections
import ctypes
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segen.config import as_dict
from segen.engines.loop import DivergenceError
from segen.faults import failpoint

# Group restarts after a rank dies, each resuming from the last checkpoint. One: a rank that
# raises (a bug, a divergence) fails the same way again, so more would only repeat it.
MAX_RESTARTS = 1
JOB, RESULT, ERRORS = "job.json", "result.json", "errors"
_TAIL_LINES = 40  # of the launcher's output, in the error of a rank that left no error file


class RankFailed(RuntimeError):
    """A rank of a multi-process training failed; the message is that rank's error."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group (from the variables torch elastic sets)."""
    rank: int
    world: int
    local_rank: int
    restart: int  # 0 in the group's first attempt, then 1, 2, ... after each restart

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Ranks:
    env = os.environ
    return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]),
                 int(env.get("TORCHELASTIC_RESTART_COUNT", 0)))


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def all_sum(values: Any) -> Any:
    """The element-wise sum of a tensor over the ranks (in place, and returned)."""
    import torch.distributed as dist

    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def section_ref(params: Any) -> list[Any]:
    """A params section as a job file carries it: [its class, its values]."""
    return [f"{type(params).__module__}:{type(params).__qualname__}", as_dict(params)]


def params_section(name: str, values: dict[str, Any]) -> Any:
    """The params section a rank was handed (validated again by its class)."""
    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)(**values)


def follower_epoch_end(ranks: Ranks) -> Any:
    """A rank's end of epoch but rank 0's: wait while rank 0 validates (or samples) and
    logs. Rank 1 may die here once (the failpoint of the restart tests), not after its
    restart."""
    def wait(trainer: Any) -> None:
        barrier()
        if ranks.rank == 1 and ranks.restart == 0:
            failpoint("ddp.rank1_epoch")

    return wait


# ---- the stage's side ------------------------------------------------------------------

def launch(entry: str, job: dict[str, Any], processes: int, workdir: Path, *, threads: int,
           dtype: str = "float32", what: str = "training") -> dict[str, Any]:
    """entry(job, ranks) ("module:function") on `processes` ranks; rank 0's return value.

    threads: the stage's CPU threads, shared by the ranks. dtype: torch's default dtype in
    the ranks (float64 for numerical checks)."""
    _check_devices(processes, what)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / ERRORS).mkdir(parents=True)
    spec = workdir / JOB
    spec.write_text(json.dumps({"entry": entry, "job": job, "dtype": dtype}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={processes}", f"--max-restarts={MAX_RESTARTS}",
               "-m", "segen.engines.ddp", str(spec)]
    code, tail = _run(command, _rank_env(threads, processes))
    if code != 0:
        raise _failure(workdir / ERRORS, what, code, tail)
    return json.loads((workdir / RESULT).read_text())


def _check_devices(processes: int, what: str) -> None:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and gpus < processes:
        raise ValueError(f"{what} with processes = {processes} needs one GPU per process, and "
                         f"this machine has {gpus}. Set processes to at most {gpus} in "
                         "params.yaml (or 1 to train in one process).")


def _rank_env(threads: int, processes: int) -> dict[str, str]:
    code_root = str(Path(__file__).resolve().parents[2])  # segen/ and models/ live here
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes)),
            "PYTHONPATH": code_root + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1"}


def _run(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the launcher, passing its output through (the ranks' progress) and keeping the
    tail; the launcher dies with this process (PR_SET_PDEATHSIG), and stops its ranks."""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", preexec_fn=_die_with_parent)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            tail.append(line)
        return proc.wait(), "".join(tail)
    except BaseException:  # interrupted: stop the group (torch elastic stops its ranks)
        proc.terminate()
        proc.wait()
        raise


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None:  # in the child, before exec: SIGTERM when the stage's thread dies
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _failure(errors: Path, what: str, code: int, tail: str) -> Exception:
    """The error of the rank that failed first in the last attempt (a rank's own error, not
    the broken connection its peers saw next), or the launcher's output when none wrote one."""
    records = [json.loads(p.read_text()) for p in errors.glob("*.json")]
    if not records:
        return RankFailed(f"{what} across processes failed (torch elastic exit status {code}) "
                          "and no rank reported an error: a rank was killed (a signal, or "
                          f"out of memory). The launcher's last lines:\n{tail}")
    last = max(r["attempt"] for r in records)
    first = min((r for r in records if r["attempt"] == last),
                key=lambda r: (r["secondary"], r["time"]))
    message = (f"{what} failed on rank {first['rank']} of {first['world']} "
               f"(attempt {last + 1} of {MAX_RESTARTS + 1}): {first['type']}: "
               f"{first['message']}\n{first['traceback']}")
    if first["type"] == DivergenceError.__name__:
        return DivergenceError(first["message"])
    return RankFailed(message)


# ---- each rank's side --------------------------------------------------------------------

def main(spec_path: Path) -> None:
    """One rank: join the group, run the entry, hand back rank 0's result or the error."""
    spec, ranks = json.loads(spec_path.read_text()), current()
    workdir = spec_path.parent
    _exit_with_launcher()
    try:
        result = _run_entry(spec, ranks)
    except BaseException as err:
        _record(workdir / ERRORS, ranks, err)
        raise
    if ranks.main:
        tmp = workdir / (RESULT + ".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, workdir / RESULT)


def _run_entry(spec: dict[str, Any], ranks: Ranks) -> Any:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.set_default_dtype(getattr(torch, spec["dtype"]))
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    # The launcher's store outlives a restart: the ranks of a restarted group would read the
    # dead group's addresses (gloo: "connectFullMesh ... Connection refused"), so each
    # attempt's keys get their own prefix.
    store, rank, world = next(dist.rendezvous("env://"))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                            store=dist.PrefixStore(f"segen/attempt{ranks.restart}", store),
                            rank=rank, world_size=world)
    try:
        module, _, function = spec["entry"].partition(":")
        return getattr(importlib.import_module(module), function)(spec["job"], ranks)
    finally:
        dist.destroy_process_group()


def _record(errors: Path, ranks: Ranks, err: BaseException) -> None:
    record = {"rank": ranks.rank, "world": ranks.world, "attempt": ranks.restart,
              "type": type(err).__name__, "message": str(err)[:4000],
              "traceback": "".join(traceback.format_exception(err)[-6:])[-4000:],
              "secondary": _broken_collective(err), "time": time.time()}
    path = errors / f"attempt{ranks.restart}-rank{ranks.rank}.json"
    path.write_text(json.dumps(record))


def _broken_collective(err: BaseException) -> bool:
    """A peer's death shows up on the other ranks as an error raised inside a collective
    (gloo: a RuntimeError 'Connection reset by peer'): a consequence, not the cause."""
    import torch.distributed as dist

    if isinstance(err, dist.DistBackendError):
        return True
    frames = traceback.extract_tb(err.__traceback__)
    where = frames[-1].filename.replace(os.sep, "/") if frames else ""
    return "/torch/distributed/" in where or "/torch/nn/parallel/" in where


def _exit_with_launcher() -> None:
    """torch elastic starts each rank in its own session: a launcher killed outright
    (SIGKILL) would leave ranks training on. Each rank exits when its parent goes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="launcher-watch").start()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
