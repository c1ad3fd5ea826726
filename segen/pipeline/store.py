"""Content-addressed artifact store: store/<stage>/<key>/ published atomically.

A stage writes into a private staging folder; publishing is a single rename, so a
key's folder either holds a complete artifact (with _meta.json) or does not exist.

Stored records name no absolute path: a result's folder is always <store>/<stage>/<key> of
the store that reads it, so a project moved, copied or cloned with its .segen/ finds its own
artifacts and no one else's.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from segen.hashing import hash_tree
from segen.project import Project

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
    def __init__(self, root: Path):
        self.root = root

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str) -> StageResult | None:
        """The published result for key, or None if absent or incomplete."""
        meta = self.path(stage, key) / META
        if not meta.is_file():
            return None
        return StageResult.from_json(meta.read_text(), self.root)

    @contextmanager
    def staging(self, stage: str) -> Iterator[Path]:
        """A private folder to write outputs into; removed if the block fails."""
        tmp = self.root / stage / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def discard(self, stage: str, key: str) -> None:
        """Remove a published key (renamed aside first, so readers never see it half gone)."""
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
        try:
            os.rename(staged, final)
        except OSError:  # already published (a concurrent or earlier run): keep that one
            if self.load(stage, key) is None:
                raise
            return self.load(stage, key)  # type: ignore[return-value]
        return result


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so readers never see it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_pointer(project: Project, stage: str) -> StageResult | None:
    """The latest result of a stage in this project (its pointer), or None."""
    pointer = project.pointer(stage)
    if not pointer.is_file():
        return None
    return StageResult.from_json(pointer.read_text(), project.store)
