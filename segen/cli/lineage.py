"""segen lineage model|data|file|graph: what made a model version, what a data version
fed, which models saw a file, and a picture of it all. Imports stay light: heavy ones go
inside handlers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli.main import command, params_and_json

    lineage = sub.add_parser("lineage", help="lineage queries: model <-> data <-> files",
                             description="What data, code and params made a model version, "
                             "and back.").add_subparsers(metavar="QUERY")
    model = command(lineage, "model", "data version, git revisions, code, params, run and "
                    "upstream keys of a registered model version", _model)
    model.add_argument("model", metavar="NAME[@ALIAS|/VERSION]",
                       help="e.g. segen-unet@champion, segen-kmeans/2, or NAME (latest)")
    data_query = command(lineage, "data", "every run and model version trained or evaluated "
                         "on a data version", _data)
    data_query.add_argument("version", metavar="MD5|GIT_REV", help="a DVC md5 (as in "
                            "data.dvc) or a git revision whose data.dvc names it (e.g. HEAD~1)")
    file_query = command(lineage, "file", "the data versions holding a file's content and the "
                         "model versions trained on them", _file)
    file_query.add_argument("path", type=Path, help="an image (or any file) to look for")
    graph = command(lineage, "graph", "draw data versions -> runs -> model versions",
                    _graph)
    graph.add_argument("--out", required=True, type=Path, help="a .html (opens offline) or "
                       ".png file")
    for parser in (model, data_query, file_query, graph):
        params_and_json(parser, "its mlflow section: where the registry is")


def _tracked(args: argparse.Namespace) -> Any:
    """Point MLflow at the project's store (as `segen run` does); returns the params."""
    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.tracking import configure_tracking

    params = load_params(Path(params_path(args)))
    configure_tracking(args.project, params.mlflow)
    return params


def _show(report: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> int:
    print(json.dumps(report) if as_json else text(report))
    return 0


def _model(args: argparse.Namespace) -> int:
    from segen.registry.lineage.queries import model_lineage
    from segen.registry.lineage.report import format_model

    _tracked(args)
    return _show(model_lineage(args.project, args.model), args.json, format_model)


def _data(args: argparse.Namespace) -> int:
    from segen.registry.lineage.queries import data_lineage
    from segen.registry.lineage.report import format_data
    from segen.registry.lineage.revisions import resolve_data_version

    _tracked(args)
    version, rev = resolve_data_version(args.project, args.version)
    return _show(data_lineage(args.project, version, rev), args.json, format_data)


def _file(args: argparse.Namespace) -> int:
    from segen.data.versioning import remote_url
    from segen.registry.lineage.queries import file_lineage
    from segen.registry.lineage.report import format_file

    params = _tracked(args)
    path = args.path if args.path.is_absolute() else Path.cwd() / args.path
    report = file_lineage(args.project, remote_url(args.project, params.data), path)
    return _show(report, args.json, format_file)


def _graph(args: argparse.Namespace) -> int:
    from segen.registry.lineage.graph import write_graph

    _tracked(args)
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    report = write_graph(args.project, out)
    return _show(report, args.json, lambda r: (
        f"wrote {r['out']}: " + ", ".join(f"{len(v)} {k} node(s)" for k, v in
                                          r["nodes"].items()) + f", {r['edges']} edge(s)"))
