"""A full disk (or quota, or file size limit) said plainly: which file, which filesystem,
what was left as it was, and what to do, instead of an OSError traceback.

    with writing(path, "nothing was published"):
        ...  # any write; ENOSPC, EDQUOT or EFBIG raise DiskFull
"""
from __future__ import annotations

import errno
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# ENOSPC: the filesystem is full; EDQUOT: the user's quota; EFBIG: a file size limit
# (RLIMIT_FSIZE, or the filesystem's largest file).
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # replace_atomic's temporary names


class DiskFull(RuntimeError):
    """A write failed for lack of space; the message is the whole story (no traceback)."""


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, DiskFull) or (isinstance(err, OSError) and err.errno in FULL)


def disk_full_message(err: OSError, path: Path | str | None, undone: str) -> str:
    """'no space left writing PATH (ENOSPC: ...): free space on the filesystem at MOUNT and
    rerun; UNDONE'. path: what was being written (the error's own filename wins)."""
    target = Path(err.filename or path or ".")
    code = errno.errorcode.get(err.errno or 0, str(err.errno))
    return (f"no space left writing {target} ({code}: {err.strerror}): free space on the "
            f"filesystem at {mount_point(target)} (or raise the quota or file size limit) "
            f"and rerun; {undone}")


def explain_disk_full(err: BaseException) -> str:
    """The message for a disk-full error, also one that no `writing` block named."""
    if isinstance(err, OSError):
        return disk_full_message(err, None, "rerun once there is space")
    return str(err)


@contextmanager
def writing(path: Path | str, undone: str) -> Iterator[None]:
    """Turn a disk-full OSError inside the block into DiskFull naming path; undone says
    what the user finds afterwards (e.g. 'nothing was published')."""
    try:
        yield
    except OSError as err:
        if err.errno not in FULL:
            raise
        raise DiskFull(disk_full_message(err, path, undone)) from err


def replace_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) to a temporary name beside path, then rename it over path: readers see the
    old file or the whole new one, and a failed write (a full disk) leaves no temporary; a
    killed one does, which remove_temporaries recognises by its name."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries of replace_atomic that killed writers left in folder (not its
    sub-folders); call it only where no live writer can be mid-write (the project lock)."""
    removed = []
    for path in folder.glob(".*.tmp") if folder.is_dir() else ():
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds path (or would hold it)."""
    current = Path(os.path.abspath(path))
    while not current.exists() or (not os.path.ismount(current) and current != current.parent):
        current = current.parent
    return current
