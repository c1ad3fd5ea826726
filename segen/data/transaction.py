"""A change of data/ and its record in data.dvc as one transaction that a kill cannot split.

Replacing data/ takes two renames (the old folder aside, the new one in), and recording it
takes `dvc add` (which rewrites data.dvc) and `dvc push`. A SIGKILL can land between any two
of these steps. So, inside `data_change(project)`:

1. a journal (.segen/data-change.json, written atomically) keeps data.dvc's text as it was;
2. `publish_folder` moves the old data/ aside to `.data.previous` (not deleted), then moves
   the new folder in;
3. the caller records the new version (`dvc add`, `dvc push`);
4. commit: `.data.previous` is renamed to a `.data.discarded-*` name (one atomic step),
   the journal is removed, and the discarded folder is deleted.

The next writer (every writing command calls `recover` first, under the project lock) finds
an interrupted change by its journal and rolls it back: the old data/ is put back from
`.data.previous` and data.dvc gets its old text, so data/ and data.dvc again record the old
version, exactly as before the killed command; then the command can simply be run again.
A kill during step 4 is past the commit point (`.data.previous` is gone): recovery keeps the
new version and only deletes leftovers.
"""
from __future__ import annotations

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


def journal_path(project: Project) -> Path:
    return project.state / "data-change.json"


def previous_path(data_dir: Path) -> Path:
    return data_dir.with_name(f".{data_dir.name}.previous")


@contextmanager
def data_change(project: Project) -> Iterator[None]:
    """The block replaces and/or records data/; all of it happens, or (after a kill) none."""
    recover(project)
    old = project.data_dvc.read_text() if project.data_dvc.is_file() else None
    write_atomic(journal_path(project), json.dumps({"data_dvc": old}))
    token = _keep_previous.set(previous_path(project.data))
    try:
        with writing(project.data, "data/ and data.dvc still hold the previous version "
                     "(nothing of the new data was kept)"):  # a full disk: DiskFull
            yield
    except BaseException:
        _roll_back(project, old)  # a refused or failed change leaves the old version
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
    if out_dir.exists():
        os.rename(out_dir, old)
    if inside:
        failpoint("data.swap")  # not in the staging folders an import publishes into
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            os.rename(old, out_dir)  # the swap failed: put the previous data back
        raise
    if not inside:
        shutil.rmtree(old, ignore_errors=True)


def recover(project: Project) -> None:
    """Roll back a change of data/ that a killed command left half done, and delete the
    folders such commands leave beside data/. Call under the project lock."""
    journal = journal_path(project)
    if journal.is_file():
        try:
            old = json.loads(journal.read_text())["data_dvc"]
        except (ValueError, KeyError, TypeError):  # written atomically: only by hand
            log.warning("%s is not a data-change journal; left data/ as it is", journal)
        else:
            if previous_path(project.data).exists():
                _roll_back(project, old)
                log.warning("an interrupted change of data/ was rolled back: data/ and "
                            "data.dvc hold the previous version again (%s)", journal)
            elif not _records_a_version(project):
                _restore_data_dvc(project, old)
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


def _commit(project: Project) -> None:
    previous = previous_path(project.data)
    doomed = previous.with_name(f".data.discarded-{uuid.uuid4().hex}")
    if previous.exists():
        os.rename(previous, doomed)  # the commit point: from here on, the new version stays
    journal_path(project).unlink(missing_ok=True)
    shutil.rmtree(doomed, ignore_errors=True)


def _roll_back(project: Project, old_data_dvc: str | None) -> None:
    previous = previous_path(project.data)
    if previous.exists():
        if project.data.exists():
            os.rename(project.data, project.data.with_name(
                f".data.discarded-{uuid.uuid4().hex}"))
        os.rename(previous, project.data)
    _restore_data_dvc(project, old_data_dvc)
    journal_path(project).unlink(missing_ok=True)
    _delete_leftovers(project.data.parent)


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
