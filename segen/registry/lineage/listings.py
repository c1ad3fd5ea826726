"""The file listing of a data version: DVC's `.dir` object (relpath -> md5 of every file).

Read by md5 through DVC's object databases (dvc_data's Tree.load), the local cache first
(.dvc/cache/files/md5/xx/yyy.dir), then the DVC remote. By md5 rather than through
DVCFileSystem(repo, rev=...) because some data versions are known only from registry
tags, with no git revision to open.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segen.project import Project
from segen.redact import redact

REMOTE = "segen"  # the remote name tasks/version_data.py configures
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Listing:
    """data_version's files, or where it was looked for when no listing was found."""
    data_version: str
    source: str | None  # "cache", "remote", or None: unavailable
    files: dict[str, str] = field(default_factory=dict)  # relpath -> md5
    detail: str = ""  # why it is unavailable

    def paths_with(self, md5: str) -> list[str]:
        return sorted(path for path, digest in self.files.items() if digest == md5)


def file_md5(path: Path) -> str:
    """The md5 DVC records for a file (DVC 3 'md5': of the raw bytes)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_listings(project: Project, remote_url: str | None, data_versions: list[str]
                  ) -> dict[str, Listing]:
    """The listing of each data version; one DVC repo opened for all of them.

    remote_url: params.data.remote resolved (None: only the local cache is searched).
    """
    from dvc.repo import Repo

    project.require_dvc()
    config = None
    if remote_url:  # as a config override: nothing written into .dvc/config
        config = {"remote": {REMOTE: {"url": remote_url}}, "core": {"remote": REMOTE}}
    with Repo(str(project.root), config=config) as repo:
        remote_odb, remote_error = _remote_odb(repo, remote_url)
        return {v: _listing(repo.cache.local, remote_odb, remote_error, v)
                for v in data_versions}


def _remote_odb(repo: Any, remote_url: str | None) -> tuple[Any, str]:
    from dvc.exceptions import DvcException

    if not remote_url:
        return None, "no DVC remote configured"
    try:
        return repo.cloud.get_remote_odb(REMOTE), ""
    except DvcException as err:
        return None, redact(f"remote {remote_url}: {err}")  # no credentials shown


def _listing(cache: Any, remote: Any, remote_error: str, data_version: str) -> Listing:
    files = _read_tree(cache, data_version)
    if files is not None:
        return Listing(data_version, "cache", files)
    files = _read_tree(remote, data_version) if remote is not None else None
    if files is not None:
        return Listing(data_version, "remote", files)
    where = f"not in the local DVC cache ({cache.path})"
    where += f", nor in the remote {remote.path}" if remote is not None else f"; {remote_error}"
    return Listing(data_version, None, detail=where)


def _read_tree(odb: Any, data_version: str) -> dict[str, str] | None:
    """relpath -> md5 from the .dir object in odb, or None when odb lacks it."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.errors import ObjectFormatError

    if odb is None:
        return None
    try:
        tree = Tree.load(odb, HashInfo("md5", data_version))
    except (FileNotFoundError, ObjectFormatError):
        return None
    return {"/".join(parts): info.value for parts, _meta, info in tree if info}
