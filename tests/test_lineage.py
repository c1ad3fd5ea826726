"""Lineage both ways across two data versions: model -> data/code/params/run, data (md5 or
git revision) -> runs and model versions, file -> data versions -> models, the picture;
and the same queries against an `mlflow server` over HTTP."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import git, init_project, segen_cli

CHANGED = "images/img_00003.png"
UNCHANGED = "images/img_00000.png"
# The stages that register two model families; the generative ones add nothing here.
STAGES = ("version_data", "validate", "preprocess", "train_unet", "evaluate_unet",
          "register_unet", "train_kmeans", "evaluate_kmeans", "register_kmeans")


def _run_stages(root: Path) -> dict[str, Any]:
    """STAGES in a flow wired as flows.pipeline wires all of them; returns the summary."""
    from prefect import flow

    from segen.config import load_params
    from segen.data.versioning import ensure_data
    from segen.pipeline.runner import StageLog
    from segen.pipeline.summary import summarise
    from segen.project import Project
    from segen.tracking import configure_tracking
    from tasks import stage_table

    @flow(name="segen-lineage-test")
    def stages_flow(project_dir: str) -> dict[str, Any]:
        project = Project.at(project_dir)
        params = load_params(project.root / "params.yaml")
        configure_tracking(project, params.mlflow)
        source = ensure_data(project, params.data, params.dataset)
        log = StageLog(project, params, stage_table())
        for name in STAGES:  # one at a time, as before the runner ran stages in parallel
            log.run_all([name])
        return summarise(project, params, log.results, log.statuses, source)

    summary = stages_flow(str(root))
    assert not summary["failed"], summary["stages"]
    return summary


@pytest.fixture(scope="module")
def history(tmp_path_factory, prefect_harness) -> dict[str, Any]:
    """A project run on data version 1 (committed), then on version 2 (one image changed,
    committed): what each run returned and the commits."""
    from PIL import Image

    saved = dict(os.environ)  # the flow points MLFLOW_TRACKING_URI at this project
    root = init_project(tmp_path_factory.mktemp("lineage") / "proj")
    first = _run_stages(root)
    git(root, "add", "data.dvc", ".gitignore"), git(root, "commit", "-qm", "data v1")
    rev1 = git(root, "rev-parse", "HEAD").strip()
    image = root / "data" / CHANGED
    original = image.read_bytes()
    pixels = Image.open(image).copy()
    pixels.putpixel((0, 0), (255 - pixels.getpixel((0, 0))[0], 0, 0))
    pixels.save(image)
    second = _run_stages(root)
    git(root, "add", "data.dvc"), git(root, "commit", "-qm", "data v2")
    rev2 = git(root, "rev-parse", "HEAD").strip()
    os.environ.clear(), os.environ.update(saved)
    assert first["data_version"] != second["data_version"]
    return {"root": root, "v1": first, "v2": second, "rev1": rev1, "rev2": rev2,
            "original": original}


@pytest.fixture
def project(history):
    """The history's project with this process's MLflow pointed at its store."""
    from segen.config import load_params
    from segen.project import Project
    from segen.tracking import configure_tracking

    project = Project.at(history["root"])
    configure_tracking(project, load_params(project.root / "params.yaml").mlflow)
    return project


def _cli_json(root: Path, *args: str) -> dict[str, Any]:
    """`segen lineage ARGS --json` in a process of its own."""
    result = segen_cli("lineage", *args, "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _main_json(root: Path, capsys, *args: str) -> dict[str, Any]:
    """The same through segen.cli.main.main in this process (no second mlflow import)."""
    from segen.cli.main import main

    capsys.readouterr()
    code = main(["--project", str(root), "lineage", *args, "--params",
                 str(root / "params.yaml"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def _versions(records: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(v["name"], v["version"]) for v in records}


def _registered(summary: dict[str, Any]) -> set[tuple[str, int]]:
    return {(m["name"], m["version"]) for m in summary["models"]}


@pytest.mark.slow
def test_lineage_model(history) -> None:
    from segen.tracking import code_root

    v1 = history["v1"]
    report = _cli_json(history["root"], "model", "test-unet/1")
    assert report["data_version"] == v1["data_version"]
    assert [r["rev"] for r in report["data_revisions"]] == [history["rev1"]]
    commit = report["code_revision"].removesuffix("-dirty")  # of this checkout, then
    assert git(code_root(), "cat-file", "-t", commit).strip() == "commit"
    assert report["project_revision"].removesuffix("-dirty") == git(
        history["root"], "rev-parse", "HEAD~2").strip()  # the init commit, before "data v1"
    assert report["params"]["unet"]["epochs"] == 2 and report["params"]["register"][
        "model_name"] == "test-unet"
    assert report["run"]["run_id"] == report["model"]["run_id"]
    assert report["run"]["stage"] == "register_unet" and report["run"]["metrics"]
    keys = {s["name"]: s["key"] for s in v1["stages"]}
    assert report["upstream_keys"] == {k: keys[k] for k in (
        "version_data", "preprocess", "train_unet", "evaluate_unet")}
    assert report["synthetic_generator"] is None


@pytest.mark.slow
def test_lineage_model_alias_latest_and_other_families(project, history) -> None:
    from segen.registry.lineage.queries import model_lineage
    from segen.tracking import client

    champion = client().get_registered_model("test-unet").aliases["champion"]
    by_alias = model_lineage(project, "test-unet@champion")["model"]
    assert by_alias["version"] == int(champion) and "champion" in by_alias["aliases"]
    latest = model_lineage(project, "test-unet")
    assert latest["model"]["version"] == 2
    assert latest["data_version"] == history["v2"]["data_version"]
    assert [r["rev"] for r in latest["data_revisions"]] == [history["rev2"]]
    kmeans = model_lineage(project, "test-kmeans/1")  # generic over registered families
    assert kmeans["data_version"] == history["v1"]["data_version"]
    assert "train_kmeans" in kmeans["upstream_keys"] and "kmeans" in kmeans["params"]
    # a model trained on synthetic pairs names their generator: on the version, or on the
    # training run (as train_unet_synthetic tags it)
    registry = client()
    registry.set_model_version_tag("test-kmeans", "1", "segen.synthetic_generator", "gen/3")
    train_run = registry.get_run(model_lineage(project, "test-unet/1")["run"]["run_id"]
                                 ).data.params["train_run_id"]
    registry.set_tag(train_run, "segen.synthetic.generator", "segen-pix2pix/2")
    try:
        assert model_lineage(project, "test-kmeans/1")["synthetic_generator"] == "gen/3"
        assert model_lineage(project, "test-unet/1")["synthetic_generator"] == "segen-pix2pix/2"
    finally:
        registry.delete_model_version_tag("test-kmeans", "1", "segen.synthetic_generator")
        registry.delete_tag(train_run, "segen.synthetic.generator")
    with pytest.raises(ValueError, match="registered models: test-kmeans, test-unet"):
        model_lineage(project, "no-such-model")


@pytest.mark.slow
def test_lineage_data(project, history, capsys) -> None:
    from segen.registry.lineage.queries import data_lineage

    v1 = history["v1"]["data_version"]
    report = data_lineage(project, v1)
    assert _versions(report["model_versions"]) == _registered(history["v1"])
    assert {r["data_version"] for r in report["runs"]} == {v1}
    assert {r["stage"] for r in report["runs"]} == {"train_unet", "register_unet",
                                                    "register_kmeans"}
    assert {v["run_id"] for v in report["model_versions"]} <= {r["run_id"]
                                                               for r in report["runs"]}
    by_git = _main_json(history["root"], capsys, "data", "HEAD~0")
    assert by_git["data_version"] == history["v2"]["data_version"]
    assert by_git["resolved_from"] == history["rev2"]
    assert _versions(by_git["model_versions"]) == _registered(history["v2"])
    # exactly: every tagged run of the store belongs to one of the two versions, once
    from segen.registry.lineage.queries import DATA_TAG, Registry

    tagged = {r.info.run_id for r in Registry().runs() if DATA_TAG in r.data.tags}
    ids1, ids2 = ({r["run_id"] for r in x["runs"]} for x in (report, by_git))
    assert not ids1 & ids2 and ids1 | ids2 == tagged
    from segen.cli.main import main

    bad = ["--project", str(history["root"]), "lineage", "data", "no-such-rev"]
    assert main(bad) == 2 and "neither a data version" in capsys.readouterr().err


@pytest.mark.slow
def test_lineage_file(project, history, tmp_path) -> None:
    from segen.registry.lineage.queries import file_lineage

    root, remote = history["root"], str(history["root"].parent / "proj-remote")
    v1, v2 = history["v1"]["data_version"], history["v2"]["data_version"]
    both = file_lineage(project, remote, root / "data" / UNCHANGED)
    assert {d["data_version"] for d in both["data_versions"]} == {v1, v2}
    assert _versions(both["model_versions"]) == _registered(history["v1"]) | _registered(
        history["v2"])
    assert both["unavailable"] == [] and both["searched"] == 2
    new = file_lineage(project, remote, root / "data" / CHANGED)
    assert [d["data_version"] for d in new["data_versions"]] == [v2]
    assert _versions(new["model_versions"]) == _registered(history["v2"])
    old = tmp_path / "old.png"
    old.write_bytes(history["original"])
    assert [d["data_version"] for d in file_lineage(project, remote, old)["data_versions"]
            ] == [v1]

    # v1's listing gone from the cache: read from the remote; gone there too: said so
    cached = root / ".dvc" / "cache" / "files" / "md5" / v1[:2] / v1[2:]
    pushed = Path(remote) / "files" / "md5" / v1[:2] / v1[2:]
    shutil.move(cached, tmp_path / "cached.dir")
    try:
        from_remote = file_lineage(project, remote, root / "data" / UNCHANGED)
        assert {d["data_version"]: d["listing_from"] for d in from_remote["data_versions"]
                } == {v1: "remote", v2: "cache"}
        shutil.move(pushed, tmp_path / "pushed.dir")
        gone = file_lineage(project, remote, root / "data" / UNCHANGED)
        assert [d["data_version"] for d in gone["data_versions"]] == [v2]
        assert [u["data_version"] for u in gone["unavailable"]] == [v1]
        assert "not in the local DVC cache" in gone["unavailable"][0]["reason"]
    finally:
        shutil.move(tmp_path / "cached.dir", cached)
        if not pushed.exists():
            shutil.move(tmp_path / "pushed.dir", pushed)


@pytest.mark.slow
def test_lineage_graph(history, tmp_path, capsys) -> None:
    from PIL import Image

    root = history["root"]
    page = tmp_path / "lineage.html"
    report = _main_json(root, capsys, "graph", "--out", str(page))
    page_text = page.read_text()
    assert "<script" not in page_text and "<link" not in page_text  # nothing to fetch
    svg = ElementTree.fromstring(page_text[page_text.index("<svg"):
                                           page_text.index("</svg>") + len("</svg>")])
    text = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    for summary in (history["v1"], history["v2"]):
        assert f"data {summary['data_version'][:12]}" in text
        assert {f"{name} v{version}" for name, version in _registered(summary)} <= text
    assert "@champion" in text and f"git {history['rev1'][:12]}" in text
    assert len(report["nodes"]["data"]) == 2 and report["edges"] == 2 * (3 + 2)

    from segen.config import load_params
    from segen.project import Project
    from segen.registry.lineage.graph import write_graph
    from segen.tracking import configure_tracking

    project = Project.at(root)
    configure_tracking(project, load_params(root / "params.yaml").mlflow)
    png = tmp_path / "lineage.png"
    write_graph(project, png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
    with pytest.raises(ValueError, match=".html"):
        write_graph(project, tmp_path / "lineage.svg")


@pytest.mark.slow
def test_lineage_against_mlflow_server(history, tmp_path, capsys) -> None:
    """The same queries over HTTP: a copy of the project re-registers into a real server."""
    from servers import mlflow_server

    root = tmp_path / "proj"
    # Without Prefect's cache records (they name the original's absolute paths) and the
    # stored registrations (the store keeps the first result published under a key): every
    # other stage is served from the store, the registrations run against the server.
    shutil.copytree(history["root"], root, symlinks=True,
                    ignore=shutil.ignore_patterns("prefect-cache", "register_*"))
    with mlflow_server(tmp_path / "mlflow") as uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        summary = _run_stages(root)  # only the registrations rerun
        assert summary["data_version"] == history["v2"]["data_version"]
        model = _main_json(root, capsys, "model", "test-unet@champion")
        assert model["data_version"] == history["v2"]["data_version"]
        assert [r["rev"] for r in model["data_revisions"]] == [history["rev2"]]
        assert model["params"]["unet"]["epochs"] == 2
        data = _main_json(root, capsys, "data", "HEAD")
        assert _versions(data["model_versions"]) == _registered(summary)
        assert "register_unet" in {r["stage"] for r in data["runs"]}


def test_data_versions_from_git(tmp_path) -> None:
    """data.dvc's history: each commit's md5, any revision resolved through it."""
    from segen.project import Project
    from segen.registry.lineage.revisions import (
        data_history,
        resolve_data_version,
        revisions_of,
    )

    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q"), git(root, "config", "user.email", "t@t"), git(
        root, "config", "user.name", "t")
    md5s = [f"{i:032x}.dir" for i in (1, 2)]
    for i, md5 in enumerate(md5s):
        (root / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  path: data\n  hash: md5\n")
        git(root, "add", "data.dvc"), git(root, "commit", "-qm", f"data v{i + 1}")
    (root / "other.txt").write_text("x")
    git(root, "add", "other.txt"), git(root, "commit", "-qm", "not data")
    project = Project.at(root)
    history = data_history(project)
    assert [r.data_version for r in history] == md5s[::-1]  # newest first
    assert [r.subject for r in revisions_of(project, md5s[0])] == ["data v1"]
    assert resolve_data_version(project, "HEAD") == (md5s[1], git(root, "rev-parse",
                                                                   "HEAD").strip())
    assert resolve_data_version(project, "HEAD~2")[0] == md5s[0]
    assert resolve_data_version(project, md5s[0][:32].upper()) == (md5s[0], None)
    with pytest.raises(ValueError, match="neither a data version"):
        resolve_data_version(project, "v9")
    git(root, "rm", "-q", "data.dvc"), git(root, "commit", "-qm", "drop data")
    with pytest.raises(ValueError, match="has no data.dvc"):
        resolve_data_version(project, "HEAD")
    assert len(data_history(project)) == 2  # the deleting commit records nothing


def test_graph_drawing(tmp_path) -> None:
    """The layout and both renderings, on a hand-made graph (no MLflow)."""
    from PIL import Image

    from segen.registry.lineage.graph import Graph, Node, layout, to_svg, write_png

    graph = Graph()
    graph.add(Node("data:a", "data", ("data a", "git 1"), "a"))
    for i in range(3):
        graph.add(Node(f"run:{i}", "run", (f"run <{i}>", "x"), "r"))
        graph.edges.append(("data:a", f"run:{i}"))
    graph.add(Node("model:m/1", "model", ("m v1", "@champion"), "m", marked=True))
    graph.edges.append(("run:2", "model:m/1"))
    layout(graph)
    assert graph.nodes["model:m/1"].y == graph.nodes["run:2"].y  # level with its run
    svg = ElementTree.fromstring(to_svg(graph))  # well-formed, "<" escaped
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "run <1>" in texts and "@champion" in texts
    write_png(graph, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as image:
        assert image.format == "PNG" and image.size == tuple(int(v) for v in graph.size())
