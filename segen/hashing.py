"""Content hashes for cache keys: bytes, files, trees and JSON values."""
from __future__ import annotations

import hashlib
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
