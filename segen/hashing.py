"""Content hashes for cache keys: files, trees, params sections and source modules."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable

_CHUNK = 1 << 20


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path, exclude: Iterable[str] = ()) -> str:
    """Hash of every file's relative path and content under root (order independent)."""
    skip = set(exclude)
    entries = sorted(
        (p.relative_to(root).as_posix(), hash_file(p))
        for p in root.rglob("*") if p.is_file() and p.name not in skip)
    return hash_json(entries)


def hash_json(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hash_bytes(text.encode())


def source_files(modules: Iterable[str]) -> list[Path]:
    """The .py files of the given module names, found without importing them."""
    files = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"stage source module {name!r} not found")
        files.append(Path(spec.origin))
    return files


def hash_sources(modules: Iterable[str]) -> str:
    return hash_json([(p.name, hash_file(p)) for p in source_files(modules)])
