"""The run's compute budget, shared by the stages running side by side in one flow: CPU
threads per stage, and how many stages may hold one GPU at once (run section of params)."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

from segen.config import RunParams

_gpu_slots: threading.BoundedSemaphore | None = None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_stage(run: RunParams) -> int:
    """run.threads_per_stage, or (null) the cores shared evenly by the parallel stages."""
    if run.threads_per_stage is not None:
        return run.threads_per_stage
    return max(1, cores() // run.max_parallel_stages)


def apply(run: RunParams) -> None:
    """Set this process's torch thread pool and GPU slots for the stages about to run.

    torch's intra-op pool is per process: every stage thread shares it, so one setting
    bounds each stage's kernels (the threads run at most max_parallel_stages at once)."""
    global _gpu_slots
    import torch

    torch.set_num_threads(threads_per_stage(run))
    _gpu_slots = threading.BoundedSemaphore(run.stages_per_gpu)


@contextmanager
def gpu_slot(uses_torch: bool) -> Iterator[None]:
    """Hold one of the GPU's stage slots while a torch stage runs (no-op on CPU)."""
    slots = _gpu_slots
    if slots is None or not uses_torch or not _cuda_available():
        yield
        return
    with slots:
        yield


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
