"""Shared helpers for the benchmarks in bench/: environment, throwaway projects, output.

The environment mirrors tests/conftest.py (telemetry off, Prefect/DVC/XDG state in a
temporary folder) and must be applied before prefect, mlflow or dvc are imported:
every script calls `bench_environment()` first thing, before importing project code.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
if str(REPO) not in sys.path:  # tasks/, models/, flows/ import from the checkout
    sys.path.insert(0, str(REPO))


def bench_environment(state: Path) -> dict[str, str]:
    """Set (and return) the environment of tests/conftest.py, with tool state under `state`."""
    from segen.env import TELEMETRY_OFF

    env = {
        **TELEMETRY_OFF,
        "PREFECT_HOME": str(state / "prefect"), "XDG_CONFIG_HOME": str(state / "xdg"),
        "DVC_SITE_CACHE_DIR": str(state / "dvc-site"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    os.environ.update(env)
    os.makedirs(env["PREFECT_HOME"], exist_ok=True)
    return env


def fresh_dir(prefix: str, keep: bool = False) -> Path:
    """A new folder under /tmp (removed at exit unless keep)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if not keep:
        import atexit

        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


def overrides_from(settings: list[str]) -> dict[str, dict[str, Any]]:
    """--set SECTION.KEY=VALUE flags (VALUE read as YAML) as params overrides for merge."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for setting in settings:
        key, value = setting.split("=", 1)
        section, name = key.split(".", 1)
        out = merge(out, {section: {name: yaml.safe_load(value)}})
    return out


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the block (DVC's logger holds its own stream)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def init_project(root: Path, overrides: dict[str, dict[str, Any]],
                 base_params: Path = REPO / "params.yaml") -> Path:
    """A fresh git + DVC project whose params.yaml is `base_params` (the repository's, or a
    profile such as params-long.yaml) with `overrides`, and a DVC remote beside it (as
    tests/conftest.py's init_project). Returns params.yaml."""
    import yaml
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    git(root, "config", "user.email", "bench@segen")
    git(root, "config", "user.name", "segen bench")
    with quiet_stdout():  # "Initialized DVC repository. You can now commit the changes..."
        Repo.init(str(root)).close()
    base = yaml.safe_load(Path(base_params).read_text())
    params = merge(merge(base, {"data": {"remote": str(root.parent / f"{root.name}-remote")}}),
                   overrides)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return path


def segen_exe() -> list[str]:
    """The real CLI: the venv's `segen` entry point (else `python -m segen.cli.main`)."""
    exe = Path(sys.executable).parent / "segen"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "segen.cli.main"]


def timed_run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a subprocess, and its result; raises with its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n"
                           f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return seconds, proc


def last_json(stdout: str) -> dict[str, Any]:
    """The last line of stdout that parses as a JSON object (`segen ... --json`)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError(f"no JSON object in the output:\n{stdout[-2000:]}")


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine() -> dict[str, Any]:
    """What the figures were measured on (load average: other work on the machine skews them)."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_1m_5m_15m": list(os.getloadavg())}


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), None where unreadable."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def busy_warning() -> str | None:
    """A warning when other work keeps the CPUs busy now (timings are then skewed)."""
    busy = cpu_busy()
    if busy is not None and busy > 0.2:
        return (f"WARNING: the CPUs were {busy:.0%} busy with other processes just before the "
                "benchmark started: timings are skewed (see loadavg in the JSON)")
    return None


def table(rows: list[tuple[str, str]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([title, line, *(f"{k:<{width}}  {v}" for k, v in rows), line])


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    return path
