"""The checks of bench/faults.py: each returns a list of Problem (empty: fine).

A Problem is `lost` when data or a record is gone or corrupt (what the benchmark counts as
lost); other problems (leftovers, a duplicate, an inconsistency that the next command
repairs) make the trial fail without counting as lost.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segen.hashing import hash_file, hash_tree

META = "_meta.json"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Stages whose digest is not the hash of their folder: version_data's is the DVC md5.
DIGEST_NOT_TREE = {"version_data"}
MOVED = ("first", "promoted", "forced", "rollback")


@dataclass(frozen=True)
class Problem:
    check: str
    text: str
    lost: bool = False

    def __str__(self) -> str:
        return f"{'LOST ' if self.lost else ''}{self.check}: {self.text}"


# ---- the snapshot taken before a trial (what "old" means) -------------------------------

def data_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of data/ (empty when data/ is missing)."""
    data = root / "data"
    return {p.relative_to(data).as_posix(): hash_file(p)
            for p in data.rglob("*") if p.is_file()} if data.is_dir() else {}


def hidden(root: Path) -> set[str]:
    """Staging and set-aside names the operations use, so a trial reports only new ones."""
    state = root / ".segen"
    names = {p.relative_to(root).as_posix() for p in root.glob(".data*")}
    names |= {p.relative_to(root).as_posix() for p in (state / "store").glob("*/.*")}
    names |= {p.relative_to(root).as_posix() for p in (state / "stages").glob(".*")}
    names |= {p.relative_to(root).as_posix() for p in state.glob(".*")}
    names |= {p.relative_to(root).as_posix() for p in (state / "work").rglob("*.tmp")}
    return names


# ---- files: store, pointers, data/ ------------------------------------------------------

def check_leftovers(root: Path, before: set[str]) -> list[Problem]:
    """No staging folder, temporary pointer, `.data-*` folder or set-aside store entry new
    since the trial began (right after a kill they are expected; the rerun must clear them).
    A `.broken-*` store folder means a published entry was found damaged: lost."""
    problems = []
    for name in sorted(hidden(root) - before):
        broken = "/.broken-" in name
        problems.append(Problem("leftover", f"{name} left after the rerun"
                                + (" (a published store entry was damaged)" if broken else ""),
                                lost=broken))
    return problems


def check_store(root: Path) -> list[Problem]:
    """Every published key folder has a _meta.json naming it, and its files hash to the
    recorded digest (a half-written or emptied entry would not)."""
    problems = []
    for folder in sorted((root / ".segen" / "store").glob("*/*")):
        if folder.name.startswith("."):
            continue
        try:
            meta = json.loads((folder / META).read_text())
            assert meta["key"] == folder.name and meta["stage"] == folder.parent.name
        except (OSError, ValueError, KeyError, AssertionError) as err:
            problems.append(Problem("store", f"{folder}: bad {META} ({err!r})", lost=True))
            continue
        digest = meta.get("digest", "")
        if (folder.parent.name not in DIGEST_NOT_TREE and SHA256.match(digest)
                and hash_tree(folder, exclude=(META,)) != digest):
            problems.append(Problem("store", f"{folder}: files do not match its digest",
                                    lost=True))
    return problems


def check_pointers(root: Path) -> list[Problem]:
    """Each .segen/stages/<stage>.json parses and names a key that is in the store."""
    problems = []
    for pointer in sorted((root / ".segen" / "stages").glob("*.json")):
        try:
            record = json.loads(pointer.read_text())
            folder = root / ".segen" / "store" / record["stage"] / record["key"]
        except (OSError, ValueError, KeyError) as err:
            problems.append(Problem("pointer", f"{pointer.name} unreadable ({err!r})",
                                    lost=True))
            continue
        if not (folder / META).is_file():
            problems.append(Problem("pointer", f"{pointer.name} names {record['key'][:12]}, "
                                    "which is not in the store", lost=True))
    return problems


def check_checkpoints(root: Path) -> list[Problem]:
    """Any checkpoint still in .segen/work loads (a resume would read it)."""
    import torch

    problems = []
    for path in sorted((root / ".segen" / "work").rglob("*.pt")):
        try:
            torch.load(path, weights_only=False, map_location="cpu")
        except Exception as err:  # noqa: BLE001 (any failure to load is the finding)
            problems.append(Problem("checkpoint", f"{path} unreadable ({type(err).__name__})",
                                    lost=True))
    return problems


def check_data_after_kill(root: Path, old: dict[str, str], new_hash: str | None,
                          n_added: int) -> list[Problem]:
    """Right after the kill data/ is the old version or the complete new one: the new one
    is new_hash (an import), or the old files plus n_added samples (data add)."""
    files = data_files(root)
    if not files:
        return [Problem("data", "data/ is missing after the kill", lost=True)]
    if files == old:
        return []
    tree = hash_tree(root / "data")
    if new_hash is not None:
        return [] if tree == new_hash else [Problem(
            "data", "data/ after the kill is neither the old nor the new version", lost=True)]
    changed = [p for p, h in old.items() if p != "manifest.csv" and files.get(p) != h]
    rows = _manifest_rows(root)
    if n_added and not changed and rows == _rows(old, root) + n_added and _consistent(root):
        return []
    return [Problem("data", f"data/ after the kill is partial: {len(changed)} old files "
                    f"changed or gone, {rows} manifest rows (old {_rows(old, root)}, "
                    f"+{n_added} expected)", lost=True)]


def check_data_after_rerun(root: Path, old: dict[str, str], new_hash: str | None,
                           n_added: int) -> list[Problem]:
    """After the rerun: `dvc status` clean for data.dvc, and data/ is the new version once
    (an import's content; data add: the old rows plus the new ones, not twice)."""
    from dvc.repo import Repo

    problems = []
    with Repo(str(root)) as repo:
        status = repo.status(targets=[str(root / "data.dvc")])
    if status:
        problems.append(Problem("data", f"dvc status: data/ differs from data.dvc {status}",
                                lost=True))
    if not (root / "data").is_dir():
        return problems + [Problem("data", "data/ is missing after the rerun", lost=True)]
    if new_hash is not None and hash_tree(root / "data") != new_hash:
        problems.append(Problem("data", "data/ after the rerun is not the imported version",
                                lost=True))
    if new_hash is None and not n_added and data_files(root) != old:
        problems.append(Problem("data", "data/ changed, but this operation does not write it",
                                lost=True))
    if n_added:
        rows, want = _manifest_rows(root), _rows(old, root) + n_added
        if rows != want or not _consistent(root):
            what = ("the manifest and data/'s files disagree" if rows == want else
                    f"the samples added {'twice' if rows > want else 'partly'}")
            problems.append(Problem("data", f"manifest has {rows} rows after the rerun, "
                                    f"expected {want}: {what}", lost=rows < want))
    return problems


def _manifest_rows(root: Path) -> int:
    manifest = root / "data" / "manifest.csv"
    return len(manifest.read_text().strip().splitlines()) - 1 if manifest.is_file() else -1


def _rows(files: dict[str, str], root: Path) -> int:
    """Rows of the old manifest: one per old image file."""
    return sum(1 for p in files if p.startswith("images/"))


def _consistent(root: Path) -> bool:
    """One manifest row per image, each naming its own image (and mask), all existing, and
    no image file outside the manifest."""
    import csv

    with open(root / "data" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    named = {r["image"] for r in rows} | {r["mask"] for r in rows if r.get("mask")}
    present = {p.relative_to(root / "data").as_posix()
               for sub in ("images", "masks") for p in (root / "data" / sub).glob("*")}
    return named == present and len({r["image"] for r in rows}) == len(rows)


# ---- the registry ------------------------------------------------------------------------

def registry_client(root: Path) -> Any:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / '.segen' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry_state(root: Path, model: str, alias: str) -> dict[str, Any]:
    """The champion's holder and the alias history (segen's registered-model tags)."""
    from segen.registry.promotion.history import read_history

    client = registry_client(root)
    aliases = client.get_registered_model(model).aliases or {}
    return {"holder": int(aliases[alias]) if alias in aliases else None,
            "events": read_history(client, model)}


def check_versions(root: Path, model: str) -> list[Problem]:
    """Every registered version has its model files (an MLmodel among its logged model's
    artifacts, on disk), a READY logged model and its lineage tags."""
    from mlflow.entities import LoggedModelStatus

    client, problems = registry_client(root), []
    for version in client.search_model_versions(f"name='{model}'"):
        label = f"{model} v{version.version}"
        # The SQLite store returns no model_id on versions (MLflow 3.17): the source has it.
        model_id = version.model_id or version.source.removeprefix("models:/")
        try:
            files = {Path(f.path).name for f in client.list_logged_model_artifacts(model_id)}
            status = client.get_logged_model(model_id).status
        except Exception as err:  # noqa: BLE001 (an unreadable model is the finding)
            problems.append(Problem("registry", f"{label}: model unreadable ({err!r})",
                                    lost=True))
            continue
        if "MLmodel" not in files:
            problems.append(Problem("registry", f"{label} lacks its model files ({sorted(files)})",
                                    lost=True))
        if status != LoggedModelStatus.READY:
            problems.append(Problem("registry", f"{label}: its logged model is {status}"))
        if "segen.data_version" not in (version.tags or {}):
            problems.append(Problem("registry", f"{label} has no lineage tags", lost=True))
    return problems


def check_champion(before: dict[str, Any], after: dict[str, Any], alias: str
                   ) -> list[Problem]:
    """The champion moved only with a completed move recorded in the history, and the
    history's replayed holder is the alias's actual holder."""
    from segen.registry.promotion.history import champion_stack

    problems, known = [], {e["key"] for e in before["events"]}
    new = [e for e in after["events"] if e["key"] not in known and e["alias"] == alias]
    if after["holder"] != before["holder"] and not any(
            e["new"] == after["holder"] and e["decision"] in MOVED for e in new):
        problems.append(Problem("champion", f"moved v{before['holder']} -> "
                                f"v{after['holder']} with no completed move in its history",
                                lost=True))
    stack = champion_stack(after["events"], alias)
    if (stack[-1] if stack else None) != after["holder"]:
        problems.append(Problem("champion", f"the history says v{stack[-1] if stack else None}"
                                f" holds {alias}, the alias is on v{after['holder']}",
                                lost=True))
    return problems
