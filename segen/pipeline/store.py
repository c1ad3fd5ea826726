"""Content-addressed artifact store: store/<stage>/<key>/ published atomically.

A stage writes into a private staging folder; publishing is a single rename, so a
key's folder either holds a complete artifact (with _meta.json) or does not exist.

Stored records name no absolute path: a result's folder is always <store>/<stage>/<key> of
the store that reads it, so a project moved, copied or cloned with its .segen/ finds its own
artifacts and no one else's.

With $SEGEN_STORE_URL (team mode, segen.pipeline.shared_store) the local store is a working
copy of a shared one: what is published here is sent to the bucket, and a key missing here
but complete there is fetched and published here, so every clone and worker shares hits.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from segen.disk import replace_atomic, writing
from segen.faults import failpoint
from segen.hashing import hash_tree
from segen.project import Project

if TYPE_CHECKING:
    from segen.pipeline.shared_store import SharedStore

log = logging.getLogger("segen.store")
META = "_meta.json"


@dataclass(frozen=True)
class StageResult:
    """What a stage hands downstream: its key, its content digest and where it lives."""
    stage: str
    key: str
    digest: str  # content hash of the outputs: what downstream keys are built from
    path: str  # the folder, in the store that loaded it (never written to disk)
    info: dict[str, Any] = field(default_factory=dict)  # small outputs (versions, metrics)

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "path"}
        return json.dumps(record, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, store_root: Path) -> "StageResult":
        record = json.loads(text)
        record.pop("path", None)  # a record from before paths were derived
        return cls(**record, path=str(store_root / record["stage"] / record["key"]))


class ArtifactStore:
    def __init__(self, root: Path, shared: "SharedStore | None" = None):
        self.root = root
        self.shared = shared

    @classmethod
    def of(cls, project: Project) -> "ArtifactStore":
        """The project's store, backed by the shared one when $SEGEN_STORE_URL names it."""
        from segen.pipeline.shared_store import shared_store

        return cls(project.store, shared_store())

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str) -> StageResult | None:
        """The published result for key, or None if absent (here and in the shared store)
        or broken. A local result the shared store lacks (made before the project joined a
        team) is sent to it."""
        result = self._load_here(stage, key)
        if self.shared is None:
            return result
        if result is not None:
            self._share(stage, key)
            return result
        return self._fetch(stage, key)

    def _share(self, stage: str, key: str) -> None:
        marker = (self.shared.url, stage, key)
        if marker not in _SHARED:  # one look at the bucket per key and process
            self.shared.upload(stage, key, self.path(stage, key))
            _SHARED.add(marker)

    def _fetch(self, stage: str, key: str) -> StageResult | None:
        """Download the shared key folder and publish it here by a rename."""
        with self.staging(stage) as staged:
            if not self.shared.fetch(stage, key, staged):
                return None
            try:
                os.rename(staged, self.path(stage, key))
            except OSError:  # fetched or published here meanwhile: keep that one
                pass
        _SHARED.add((self.shared.url, stage, key))
        return self._load_here(stage, key)

    def _load_here(self, stage: str, key: str) -> StageResult | None:
        """The result in the local store, or None if absent or broken.

        Publishing renames a folder that already holds _meta.json, so a key folder without a
        readable one was damaged afterwards (a crashed disk, a hand edit): it is a miss, and
        it is moved aside so that the stage can publish its key again."""
        folder = self.path(stage, key)
        meta = folder / META
        if not folder.is_dir():
            return None
        try:
            return StageResult.from_json(meta.read_text(), self.root)
        except (OSError, ValueError, TypeError, KeyError) as err:
            self._set_aside(folder, f"{meta} is missing or unreadable ({_short(err)})")
            return None

    def _set_aside(self, folder: Path, why: str) -> None:
        """Rename a broken key folder out of the way (kept for a look, then deletable)."""
        aside = folder.with_name(f".broken-{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(folder, aside)
        except FileNotFoundError:  # another reader set it aside first
            return
        log.warning("%s: treated as not stored, the stage runs again; the broken folder is "
                    "now %s (delete it once inspected)", why, aside)

    @contextmanager
    def staging(self, stage: str) -> Iterator[Path]:
        """A private folder to write outputs into; removed if the block fails (a full disk
        raises DiskFull naming the file: nothing of the stage is published)."""
        tmp = self.root / stage / f".tmp-{uuid.uuid4().hex}"
        try:
            with writing(tmp, f"nothing of {stage} was published (its staging folder is "
                         "removed); the stages before it are stored"):
                tmp.mkdir(parents=True)
                yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def discard(self, stage: str, key: str) -> None:
        """Remove a published key (renamed aside first, so readers never see it half gone),
        here and in the shared store."""
        if self.shared is not None:
            self.shared.discard(stage, key)
            _SHARED.discard((self.shared.url, stage, key))
        final = self.path(stage, key)
        if final.exists():
            doomed = final.with_name(f".discarded-{key}-{uuid.uuid4().hex}")
            os.rename(final, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def publish(self, stage: str, key: str, staged: Path, info: dict[str, Any],
                digest: str | None = None) -> StageResult:
        """Atomically move a staged folder to its key; the first publisher wins."""
        final = self.path(stage, key)
        result = StageResult(stage=stage, key=key, digest=digest or hash_tree(staged),
                             path=str(final), info=info)
        (staged / META).write_text(result.to_json())
        failpoint("store.publish")
        try:
            os.rename(staged, final)
        except OSError:  # already published (a concurrent or earlier run): keep that one
            existing = self._load_here(stage, key)
            if existing is not None:
                if self.shared is not None:
                    self._share(stage, key)
                return existing
            os.rename(staged, final)  # what was there was broken, and load set it aside
        if self.shared is not None:
            self._share(stage, key)
        return result


_SHARED: set[tuple[str, str, str]] = set()  # (store url, stage, key) known to be shared


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so readers never see it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        tmp.write_text(text)
        failpoint("pointer.write")

    replace_atomic(path, write)


def read_pointer(project: Project, stage: str) -> StageResult | None:
    """The latest result of a stage in this project (its pointer), or None when there is
    none or it cannot be read (a truncated or hand-edited file: the next run rewrites it)."""
    pointer = project.pointer(stage)
    if not pointer.is_file():
        return None
    try:
        return StageResult.from_json(pointer.read_text(), project.store)
    except (OSError, ValueError, TypeError, KeyError) as err:
        log.warning("stage pointer %s is unreadable (%s): treated as absent; the next "
                    "`segen run` rewrites it", pointer, _short(err))
        return None


def _short(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:200]


def sweep_staging(root: Path) -> None:
    """Delete the staging and discarded folders that killed stages left in the store.

    Only a writer holding the project lock may call it: then no live stage is staging."""
    for stage_dir in root.iterdir() if root.is_dir() else ():
        for path in stage_dir.glob(".*"):
            if path.name.startswith((".tmp-", ".discarded-")) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
