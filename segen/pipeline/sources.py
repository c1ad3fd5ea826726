"""The source a stage's cache key covers, derived from the imports of its body (never listed
by hand, so a helper cannot be missed).

A stage's sources are
- in its own stage module: the stage function, the module-level statements it refers to by
  name (helpers, constants, the import lines that bind them) and the statements that refer to
  it (the `TASKS = {...: family_stage_task(..., body, still_valid=...)}` tables), transitively;
- every module of this checkout that those statements import (also inside functions: the
  stage bodies import their engines lazily), and everything *those* import, transitively.
  A module's package `__init__` counts too, since importing a module runs it.

What is hashed is the normalised source: the module's syntax tree without docstrings
(`ast.dump`), so reformatting, comments and docstrings do not rerun a stage; any change to
code does. dvc.yaml's deps are the same files, hashed by DVC byte for byte (so `dvc repro`
also reruns on a comment-only edit).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterable

from segen.hashing import hash_bytes, hash_json

ROOT = Path(__file__).resolve().parents[2]  # the checkout: segen/, tasks/, flows/, models/
# segen's own packages. Installed from a wheel, ROOT is site-packages, where every other
# package sits beside these: only these are segen's code (else torch's files would be hashed).
PACKAGES = ("segen", "tasks", "models", "flows")


@functools.lru_cache(maxsize=None)  # a module's file does not move within one process
def module_file(name: str) -> Path | None:
    """The .py file of a module of this checkout (a package: its __init__), else None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, stamp: tuple[int, int]) -> ast.Module:
    """The module's syntax tree, its docstrings dropped (they are not code)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _file_digest(path: Path, stamp: tuple[int, int]) -> str:
    return _normalised([_parse(path, stamp)])


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime, size): what the caches below are keyed on, so an edited file is read again."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def file_digest(path: Path) -> str:
    return _file_digest(path, _stamp(path))


def parse(path: Path) -> ast.Module:
    return _parse(path, _stamp(path))


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Module names an import statement may load: each target, its parents, and for
    `from pkg import name` the submodule pkg.name where there is one."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
    names = set()
    for target in targets:
        parts = target.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(n for n in names if n and module_file(n) is not None)


def imports_in(nodes: Iterable[ast.AST], package: str) -> set[str]:
    """Every module of this checkout imported anywhere inside nodes."""
    found: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                found.update(_imported(sub, package))
    return found


def _package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@functools.lru_cache(maxsize=None)
def _file_imports(path: Path, stamp: tuple[int, int]) -> frozenset[str]:
    return frozenset(imports_in([_parse(path, stamp)], _package_of(path)))


def module_closure(names: Iterable[str]) -> set[Path]:
    """The files of the given modules and of everything they import, transitively."""
    todo, seen = list(names), set()
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_file_imports(path, _stamp(path)))
    return seen


def _bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement defines."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = {ast.Assign: lambda n: n.targets, ast.AnnAssign: lambda n: [n.target],
               ast.AugAssign: lambda n: [n.target]}.get(type(node))
    if targets is None:
        return set()
    return {sub.id for t in targets(node) for sub in ast.walk(t) if isinstance(sub, ast.Name)}


def _used_names(node: ast.AST) -> set[str]:
    """Module-level names a statement may refer to: for a function, the names it reads less
    its parameters and its locals (a stage's `preprocess` argument is not the stage)."""
    used = {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        local = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                 *filter(None, (args.vararg, args.kwarg)))}
        local |= {sub.id for sub in ast.walk(node)
                  if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)}
        used -= local
    return used


def stage_statements(module: ast.Module, function: str) -> list[ast.stmt]:
    """The top-level statements of a stage module that the stage function depends on, or
    that depend on it (its task table), in file order."""
    body = module.body  # docstrings already dropped (_parse)
    chosen = {i for i, n in enumerate(body) if function in _bound_names(n)}
    if not chosen:
        raise LookupError(f"no top-level function {function!r} in its stage module")
    chosen |= {i for i, n in enumerate(body)  # its task table
               if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               and function in _used_names(n)}
    frontier = set(chosen)
    while frontier:
        wanted = set().union(*(_used_names(body[i]) for i in frontier))
        frontier = {i for i, n in enumerate(body) if i not in chosen and _bound_names(n) & wanted}
        chosen |= frontier
    return [body[i] for i in sorted(chosen)]


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
        and isinstance(node.value.value, str)


def _normalised(nodes: Iterable[ast.AST]) -> str:
    """Digest of ast.dump of docstring-free trees: code only (no comments, layout or
    docstrings)."""
    dumped = (ast.dump(n, annotate_fields=False, include_attributes=False) for n in nodes)
    return hash_bytes("\n".join(dumped).encode())


@functools.lru_cache(maxsize=None)
def _stage_sources(module: str, function: str, stamps: tuple) -> tuple[str, tuple[Path, ...]]:
    path = module_file(module)
    assert path is not None, f"stage module {module} is not in this checkout"
    statements = stage_statements(parse(path), function)
    library = module_closure(imports_in(statements, _package_of(path)))
    library.discard(path)
    parts = [(module_name(path), f"{function}:{_normalised(statements)}")]
    parts += sorted((module_name(p), file_digest(p)) for p in library)
    return hash_json(parts), tuple(sorted({path, *library}))


def _stamps() -> tuple:
    """Every .py file's path and stamp in the code folders: a cheap change detector."""
    return tuple((str(p), *_stamp(p)) for folder in PACKAGES
                 for p in sorted((ROOT / folder).rglob("*.py")))


def external_imports(files: Iterable[Path]) -> set[str]:
    """Modules from outside this checkout that these files import, anywhere in them."""
    found: set[str] = set()
    for path in files:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module)
    return {name for name in found if module_file(name.split(".")[0]) is None
            and name.split(".")[0] != "__future__"}


def uses_torch(files: Iterable[Path]) -> bool:
    """Whether any of these modules imports torch (the stage may want a GPU)."""
    for path in files:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch"
                                                    for a in node.names):
                return True
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
                return True
    return False


def stage_sources(module: str, function: str) -> tuple[str, tuple[Path, ...]]:
    """(digest of the normalised source, the files it covers) of one stage body."""
    return _stage_sources(module, function, _stamps())


def modules_digest(names: Iterable[str]) -> str:
    """Digest of the normalised source of these modules and everything they import."""
    return hash_json(sorted((module_name(p), file_digest(p)) for p in module_closure(names)))
