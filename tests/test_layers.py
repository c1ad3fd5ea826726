"""The layers of DESIGN.md hold: import-linter's contracts in pyproject.toml (each layer
imports only the layers below it; no cycles inside a package), and no private name is
imported from another module."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("segen", "tasks", "flows", "models")


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_private_name_is_imported_from_another_module() -> None:
    offenders = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in \
                        PACKAGES:
                    offenders += [f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                                  for a in node.names
                                  if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []
