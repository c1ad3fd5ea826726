"""Data versions in git: which commits of data.dvc recorded which DVC md5.

data.dvc is the one file that names a data version, so its git history is the map from
code revisions to data versions (`git log -- data.dvc`, then `git show REV:data.dvc`).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from segen.project import Project

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


@dataclass(frozen=True)
class DataRecord:
    """One commit that changed data.dvc, and the data version it records after the change."""
    rev: str  # full commit sha
    date: str  # committer date, ISO 8601
    subject: str
    data_version: str  # the .dir md5, e.g. "0f3a...9c.dir"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _git(project: Project, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(project.root), *args], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, args, result.stdout,
                                            result.stderr)
    return result.stdout


def _md5_in(text: str) -> str | None:
    """The md5 a data.dvc text records (None for a file without outs)."""
    outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def data_history(project: Project) -> list[DataRecord]:
    """Every commit that changed data.dvc, newest first ([] outside git or without any)."""
    try:
        # ./data.dvc: the path relative to the project, which may sit below the git root
        log = _git(project, "log", "--format=%H%x09%cI%x09%s", "--", "./data.dvc")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    records = []
    for line in log.splitlines():
        rev, date, subject = line.split("\t", 2)
        try:
            md5 = _md5_in(_git(project, "show", f"{rev}:./data.dvc"))
        except subprocess.CalledProcessError:  # the commit deleted data.dvc
            continue
        if md5:
            records.append(DataRecord(rev, date, subject, md5))
    return records


def revisions_of(project: Project, data_version: str) -> list[DataRecord]:
    """The commits of data.dvc that recorded data_version, newest first."""
    return [r for r in data_history(project) if r.data_version == data_version]


def is_md5(text: str) -> bool:
    return _MD5.match(text) is not None


def normalise_md5(text: str) -> str:
    """A data version as DVC records a directory: 32 hex digits and ".dir"."""
    return text if text.endswith(".dir") else f"{text}.dir"


def resolve_data_version(project: Project, spec: str) -> tuple[str, str | None]:
    """An md5 (with or without .dir) or any git revision -> (data version, commit or None).

    A revision is read through data.dvc as committed there.
    """
    spec = spec.strip()
    if is_md5(spec.lower()):
        return normalise_md5(spec.lower()), None
    try:
        rev = _git(project, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}").strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise ValueError(f"{spec!r} is neither a data version (a DVC md5: 32 hex digits, "
                         f"optionally with .dir) nor a git revision of {project.root} "
                         "(e.g. HEAD, HEAD~1, a commit sha or a tag).") from None
    try:
        md5 = _md5_in(_git(project, "show", f"{rev}:./data.dvc"))
    except subprocess.CalledProcessError:
        md5 = None
    if not md5:
        raise ValueError(f"git revision {spec} ({rev[:12]}) has no data.dvc recording a data "
                         f"version. Revisions that do: `git log -- data.dvc` in {project.root}.")
    return md5, rev


def working_version(project: Project) -> str | None:
    """What data.dvc in the working tree records (perhaps not committed yet)."""
    if not project.data_dvc.is_file():
        return None
    return _md5_in(project.data_dvc.read_text())
