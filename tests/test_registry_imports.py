"""segen/registry's imports: registering a model loads the alias history, not the
promotion gate; no module imports another's private names; nothing reads MLflow's tables
behind its client."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "segen" / "registry"


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [n for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_registering_does_not_import_the_promotion_gate():
    code = ("import json, sys; import segen.registry.registration; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                                           capture_output=True, check=True).stdout))
    assert "segen.registry.promotion.history" in loaded
    heavy = {"segen.registry.promotion.moves", "segen.registry.promotion.gate",
             "segen.registry.promotion.generation", "scipy", "torch", "mlflow"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith("segen.engines")}


def test_no_private_names_imported_across_modules():
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
                 for path in [*REGISTRY.rglob("*.py"), ROOT / "segen/engines/gen_evaluation.py"]
                 for node in _imports(path) if isinstance(node, ast.ImportFrom)
                 for alias in node.names if alias.name.startswith("_")]
    assert not offenders


def test_mlflow_is_read_through_its_client_only():
    for path in REGISTRY.rglob("*.py"):
        modules = {alias.name.split(".")[0] for node in _imports(path)
                   for alias in node.names if isinstance(node, ast.Import)}
        modules |= {(node.module or "").split(".")[0] for node in _imports(path)
                    if isinstance(node, ast.ImportFrom)}
        assert not {"sqlite3", "sqlalchemy", "psycopg", "psycopg2"} & modules, path
        strings = [n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [s for s in strings if "SELECT " in s.upper() and " FROM " in s.upper()], path
