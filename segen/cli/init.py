"""segen init [DIR]: a segen project in a repository of one's own, with segen installed as a
package (like `dvc init`): git and DVC repos, segen's default params.yaml, dvc.yaml, .segen/
git-ignored and the DVC remote that params.yaml names."""
from __future__ import annotations

import argparse
import logging
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segen.project import Project

IGNORED = ".segen/"  # every output and tool state (segen.project)
SAME_RULES = {".segen", ".segen/", "/.segen", "/.segen/"}  # lines that already ignore it
NEXT_STEPS = """next:
  segen data import-pairs IMAGES MASKS   # your data (without it, `segen run` generates the
                                         # default shapes dataset)
  segen run                              # train, evaluate and register the models
  git add .gitignore .dvc params.yaml dvc.yaml data.dvc && git commit -m 'segen init'
"""


def add_commands(sub: Any, data: Any) -> None:
    """Add `segen init` to the top-level parser (sub)."""
    from segen.cli.main import command

    init = command(sub, "init", "make DIR a segen project: git + DVC repos, params.yaml with "
                   "segen's defaults, dvc.yaml, a DVC remote", _init)
    # DIR is the project root main() prepares (SUPPRESS: absent, --project stands).
    init.add_argument("project", nargs="?", default=argparse.SUPPRESS, metavar="DIR",
                      help="the project's folder, made if absent (default: current dir)")
    init.add_argument("--force", action="store_true", help="replace an existing params.yaml "
                      "and dvc.yaml")


def _init(args: argparse.Namespace) -> int:
    from segen.project import ProjectError

    root = args.project.root
    existing = [name for name in ("params.yaml", "dvc.yaml") if (root / name).exists()]
    if existing and not args.force:
        raise ProjectError(f"{root} already holds {' and '.join(existing)}: it is a segen (or "
                           "DVC) project already. Use --force to replace them with segen's "
                           "defaults.")
    root.mkdir(parents=True, exist_ok=True)
    done = [_ensure_git(root), _ensure_dvc(root), _write_params(root, existing),
            _write_dvc_yaml(root, existing), _ignore_state(root), _configure_remote(args.project)]
    print(f"segen project in {root}:\n" + "\n".join(f"  {line}" for line in done))
    print(NEXT_STEPS, end="")
    return 0


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def _git_toplevel(root: Path) -> Path | None:
    found = _git(root, "rev-parse", "--show-toplevel")
    return Path(found.stdout.strip()).resolve() if found.returncode == 0 else None


def _ensure_git(root: Path) -> str:
    from segen.project import ProjectError

    if (top := _git_toplevel(root)) is not None:
        return f"git repository: kept ({top})"
    made = _git(root, "init", "-q")
    if made.returncode != 0:
        raise ProjectError(f"`git init {root}` failed: {made.stderr.strip()}")
    return "git repository: created"


def _ensure_dvc(root: Path) -> str:
    from dvc.config import Config
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from segen.project import ProjectError

    if (root / ".dvc").is_dir():
        return "DVC repository: kept"
    hints = logging.getLogger("dvc.repo.init")  # its "you can now commit": ours come last
    hints.disabled = True
    try:  # inside a larger git repository DVC must be told it lives in a subfolder
        Repo.init(str(root), subdir=_git_toplevel(root) != root).close()
    except DvcException as err:
        raise ProjectError(f"`dvc init` in {root} failed: {err}") from err
    finally:
        hints.disabled = False
    with Config(str(root / ".dvc")).edit("repo") as conf:  # no phoning home (TOOL-NOTES.md)
        conf["core"].update({"analytics": "false", "check_update": "false"})
    return "DVC repository: created"


def default_params() -> bytes:
    """segen's params.yaml, shipped inside the package (segen/params.yaml links to the
    checkout's own), so an installed wheel has the defaults too."""
    return files("segen").joinpath("params.yaml").read_bytes()


def _write_params(root: Path, existing: list[str]) -> str:
    (root / "params.yaml").write_bytes(default_params())
    verb = "replaced" if "params.yaml" in existing else "written"
    return f"params.yaml: {verb} with segen's defaults (edit it: one section per stage)"


def _write_dvc_yaml(root: Path, existing: list[str]) -> str:
    from segen.pipeline import dvcyaml
    from tasks import stage_table

    (root / "dvc.yaml").write_text(dvcyaml.render(root, stage_table()))
    verb = "replaced" if "dvc.yaml" in existing else "written"
    return f"dvc.yaml: {verb} (`dvc repro` runs the same stages as `segen run`)"


def _ignore_state(root: Path) -> str:
    """Append .segen/ to .gitignore unless a line already says it; other lines stay."""
    path = root / ".gitignore"
    text = path.read_text() if path.is_file() else ""
    if SAME_RULES & {line.strip() for line in text.splitlines()}:
        return f".gitignore: {IGNORED} already there"
    path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + IGNORED + "\n")
    return f".gitignore: {IGNORED} added"


def _configure_remote(project: "Project") -> str:
    """The default DVC remote, from params.yaml data.remote, as every data version sets it."""
    from segen.config import load_params
    from segen.data.versioning import REMOTE, configure_remote, remote_url
    from segen.redact import redact

    params = load_params(project.root / "params.yaml").data
    configure_remote(project, params)
    return (f"DVC remote {REMOTE!r}: {redact(remote_url(project, params))} (params.yaml "
            "data.remote; set an s3:// URL there to share it)")
