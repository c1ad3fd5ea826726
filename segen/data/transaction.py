"""A change of data/ and its record in data.dvc as one transaction that a kill cannot split.

Replacing data/ and recording it (`dvc add`, which rewrites data.dvc, then `dvc push`) are
several steps, and a SIGKILL can land between any two. So, inside `data_change(project)`:

1. a journal (.segen/data-change.json, written atomically) keeps data.dvc's text and the
   inode of the current data/ folder;
2. `publish_folder` renames the new folder to `.data.previous`, then exchanges it with data/
   in one step (renameat2 RENAME_EXCHANGE, Linux): data/ is the old or the whole new folder
   at every moment, and `.data.previous` then holds the old one, kept. Where the filesystem
   cannot exchange, the old data/ is renamed aside first (data/ is missing for an instant);
3. the caller records the new version (`dvc add`, `dvc push`);
4. commit: `.data.previous` is renamed to a `.data.discarded-*` name (the commit point),
   the journal is removed, and the discarded folder is deleted.

The next writer (every writing command calls `recover` first, under the project lock) finds
an interrupted change by its journal and rolls it back. `.data.previous` is the old data/
when its inode is the journal's (the exchange happened: the old folder comes back), else the
staged new one (it is discarded): data/ and data.dvc again record the old version, exactly as
before the killed command, and the command can simply be run again.
"""
from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from segen.disk import remove_temporaries, writing
from segen.faults import failpoint
from segen.pipeline.store import write_atomic
from segen.project import Project

log = logging.getLogger("segen.data")
# Folders of half-written or replaced data beside data/ (the importers' mkdtemp prefixes).
_LEFTOVER_PREFIXES = (".data-import-", ".data-add-", ".data-generate-", ".data.discarded-")
_keep_previous: ContextVar[Path | None] = ContextVar("keep_previous", default=None)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def journal_path(project: Project) -> Path:
    return project.state / "data-change.json"


def previous_path(data_dir: Path) -> Path:
    return data_dir.with_name(f".{data_dir.name}.previous")


@contextmanager
def data_change(project: Project) -> Iterator[None]:
    """The block replaces and/or records data/; all of it happens, or (after a kill) none."""
    recover(project)
    old = project.data_dvc.read_text() if project.data_dvc.is_file() else None
    write_atomic(journal_path(project), json.dumps({"data_dvc": old,
                                                    "data_inode": _inode(project.data)}))
    token = _keep_previous.set(previous_path(project.data))
    try:
        with writing(project.data, "data/ and data.dvc still hold the previous version "
                     "(nothing of the new data was kept)"):  # a full disk: DiskFull
            yield
    except BaseException:
        _roll_back(project, _journal(project))  # a refused or failed change: the old
        raise
    finally:
        _keep_previous.reset(token)
    _commit(project)


def publish_folder(tmp: Path, out_dir: Path) -> None:
    """Put the folder tmp in place of out_dir. Inside data_change, the old out_dir stays as
    `.<name>.previous` until the change commits; outside one, it is deleted at once."""
    keep = _keep_previous.get()
    inside = keep is not None and keep == previous_path(out_dir)
    old = previous_path(out_dir) if inside else tmp.with_name(f"{tmp.name}-old")
    if out_dir.exists() and _exchange(tmp, out_dir, old):
        pass  # out_dir is the new folder, old the previous one
    else:
        if out_dir.exists():
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if old.exists() and not out_dir.exists():
                os.rename(old, out_dir)  # the swap failed: put the previous data back
            raise
    if inside:
        failpoint("data.swap")  # not in the staging folders an import publishes into
    else:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(new: Path, current: Path, old: Path) -> bool:
    """Rename new to old, then exchange old and current atomically; False (nothing moved)
    where the kernel or the filesystem cannot exchange."""
    os.rename(new, old)
    libc = ctypes.CDLL(None, use_errno=True)
    rename2 = getattr(libc, "renameat2", None)
    if rename2 is not None and rename2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD,
                                       os.fsencode(current), _RENAME_EXCHANGE) == 0:
        return True
    if rename2 is not None and ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS,
                                                          errno.EOPNOTSUPP):
        os.rename(old, new)
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(current))
    os.rename(old, new)  # no exchange here: the caller renames one after the other
    return False


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def recover(project: Project) -> None:
    """Roll back a change of data/ that a killed command left half done, and delete the
    folders such commands leave beside data/. Call under the project lock."""
    journal = journal_path(project)
    if journal.is_file():
        saved = _journal(project)
        if saved is None:  # written atomically: only a hand edit makes it unreadable
            log.warning("%s is not a data-change journal; left data/ as it is", journal)
        elif previous_path(project.data).exists() or saved["data_inode"] is None:
            _roll_back(project, saved)
            log.warning("an interrupted change of data/ was rolled back: data/ and "
                        "data.dvc hold the previous version again (%s)", journal)
        elif not _records_a_version(project):
            _restore_data_dvc(project, saved["data_dvc"])
            log.warning("data.dvc was left half written by an interrupted command: its "
                        "previous text is restored (%s)", journal)
        journal.unlink(missing_ok=True)
    _delete_leftovers(project.data.parent)
    # the temporaries of atomic writes (pointers, this journal, data.dvc, reports) that a
    # kill left before their rename
    for folder in (project.root, project.state, project.pointers, project.state / "reports",
                   project.state / "retrain", project.state / "retrain" / "runs"):
        for path in remove_temporaries(folder):
            log.info("removed %s, left by an interrupted write", path)


def _journal(project: Project) -> dict | None:
    try:
        saved = json.loads(journal_path(project).read_text())
        # a journal without the inode (an older segen): data/ as it is now counts as the old
        return {"data_dvc": saved["data_dvc"],
                "data_inode": saved.get("data_inode", _inode(project.data))}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _commit(project: Project) -> None:
    previous = previous_path(project.data)
    doomed = previous.with_name(f".data.discarded-{uuid.uuid4().hex}")
    if previous.exists():
        os.rename(previous, doomed)  # the commit point: from here on, the new version stays
    journal_path(project).unlink(missing_ok=True)  # (with no previous data/: this one)
    shutil.rmtree(doomed, ignore_errors=True)


def _roll_back(project: Project, saved: dict | None) -> None:
    """data/ as the journal found it: the previous folder back if the exchange happened, the
    staged one discarded if not; data.dvc's old text."""
    if saved is None:
        return
    previous, data = previous_path(project.data), project.data
    if previous.exists() and _inode(previous) == saved["data_inode"]:
        _discard(data)
        os.rename(previous, data)
    elif previous.exists():
        _discard(previous)  # the staged new folder, never exchanged
    elif saved["data_inode"] is None:
        _discard(data)  # data/ did not exist before the change
    _restore_data_dvc(project, saved["data_dvc"])
    journal_path(project).unlink(missing_ok=True)
    _delete_leftovers(project.data.parent)


def _discard(folder: Path) -> None:
    if folder.exists():
        os.rename(folder, folder.with_name(f".data.discarded-{uuid.uuid4().hex}"))


def _restore_data_dvc(project: Project, text: str | None) -> None:
    if text is None:
        project.data_dvc.unlink(missing_ok=True)
    elif not project.data_dvc.is_file() or project.data_dvc.read_text() != text:
        write_atomic(project.data_dvc, text)


def _records_a_version(project: Project) -> bool:
    """data.dvc parses and names a .dir md5 (DVC does not write it atomically)."""
    import yaml

    if not project.data_dvc.is_file():
        return True  # nothing recorded is a valid state (a project before its first run)
    try:
        outs = (yaml.safe_load(project.data_dvc.read_text()) or {}).get("outs") or [{}]
        return bool(outs[0].get("md5"))
    except (yaml.YAMLError, AttributeError):
        return False


def _delete_leftovers(root: Path) -> None:
    for path in root.iterdir() if root.is_dir() else ():
        if path.is_dir() and path.name.startswith(_LEFTOVER_PREFIXES):
            shutil.rmtree(path, ignore_errors=True)
