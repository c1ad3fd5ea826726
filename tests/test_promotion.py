"""Promotion: the bootstrap gate on hand-made scores, then real pipeline-trained versions
judged against a real `mlflow server` on 127.0.0.1: a worse challenger rejected, a better
one promoted, a forced promotion, a rollback, the history read back in order after a
server restart, and two concurrent `segen promote` processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from conftest import MAX_PIXELS, init_project, segen_cli, write_params
from servers import free_port, mlflow_server

from segen.registry.promotion.bootstrap import clears_margin, paired_bootstrap
from segen.registry.promotion.history import champion_stack

UNET, KMEANS = "test-unet", "test-kmeans"
# Stages that make a U-Net and a K-means version (the rest of the pipeline is not needed).
_STAGES = ("version_data", "validate", "preprocess", "train_unet", "evaluate_unet",
           "register_unet", "train_kmeans", "evaluate_kmeans", "register_kmeans")
# On shape-vs-background masks a tiny U-Net learns in seconds, so these three settings
# rank reliably (per-image mean IoU measured on 12 test images: about 0.44 < 0.76 < 0.91;
# the five shape classes take far longer to tell apart than a test can wait).
_WORSE = {"epochs": 1, "batch_size": 8, "base_width": 2}
_MEDIUM = {"epochs": 3, "batch_size": 2, "base_width": 4}
_BETTER = {"epochs": 10, "batch_size": 2, "base_width": 4}
# K-means version 2 clusters by place rather than colour: per-image ARI against the binary
# masks about 0.02, against about 0.83 for version 1's colour clusters (the default section).
_KMEANS_WORSE = {"position_weight": 100.0}


def server_test(test):
    """Slow, and longer than the default timeout: the first one to run builds the registry
    (a real server and three pipeline-trained U-Nets: minutes on 2 busy cores)."""
    return pytest.mark.slow(pytest.mark.timeout(1800)(test))


def _boot(a, b, **kw):
    return paired_bootstrap(np.asarray(a), np.asarray(b), samples=kw.get("samples", 500),
                            confidence=0.95, seed=0)


def test_identical_models_are_not_clearly_better():
    scores = np.random.default_rng(1).uniform(0.3, 0.9, size=50)
    result = _boot(scores, scores)
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert not clears_margin(result["ci_low"], result["ci_high"], 0.0, True)
    assert not clears_margin(result["ci_low"], result["ci_high"], 0.0, False)


def test_constant_difference_gives_a_point_interval():
    champion = np.random.default_rng(2).uniform(0.1, 0.7, size=30)
    result = _boot(champion + 0.2, champion)
    assert result["difference"] == pytest.approx(0.2)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(0.2), pytest.approx(0.2))
    assert clears_margin(result["ci_low"], result["ci_high"], 0.1, True)
    assert not clears_margin(result["ci_low"], result["ci_high"], 0.25, True)
    # lower is better (FID): a +0.2 difference is worse, -0.2 clears a 0.1 margin
    assert not clears_margin(0.2, 0.2, 0.1, False) and clears_margin(-0.2, -0.2, 0.1, False)


def test_bootstrap_is_paired_seeded_and_skips_undefined_images():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, size=40)  # large between-image spread, small paired gain
    challenger = base + 0.05 + rng.normal(0, 0.01, size=40)
    first, again = _boot(challenger, base), _boot(challenger, base)
    assert first == again and first["ci_low"] > 0.03  # pairing cancels the spread
    challenger[0] = np.nan
    assert _boot(challenger, base)["n_images"] == 39
    with pytest.raises(ValueError, match="no test image"):
        _boot([np.nan], [0.5])


def test_champion_stack_replays_promotions_and_rollbacks():
    def event(action, previous, new):
        return {"alias": "champion", "action": action, "previous": previous, "new": new}
    events = [event("promote", 1, 1), event("promote", 1, 3), event("promote", 3, 2),
              event("rollback", 2, 3)]
    assert champion_stack(events, "champion") == [1, 3]
    assert champion_stack(events + [event("rollback", 3, 1)], "champion") == [1]
    registered = [event("register", None, 1), event("promote", 1, 4)]  # record_alias_move
    assert champion_stack(registered, "champion") == [1, 4]


def test_a_held_lock_makes_a_second_promotion_wait_then_fail_clearly(tmp_path):
    from segen.project import Project
    from segen.registry.promotion.lock import PromotionBusy, model_lock

    project = Project.at(tmp_path)
    with model_lock(project, "m", 5.0) as path:
        assert path == tmp_path / ".segen" / "locks" / "m.lock"
        with pytest.raises(PromotionBusy, match=r"still holds .*m\.lock after 0\.3 s"):
            with model_lock(project, "m", 0.3):
                pass
    with model_lock(project, "m", 0.3):  # released: free again
        pass


def test_fid_bootstrap_matches_torchmetrics_and_ranks_the_closer_model():
    import torch

    from models.gen_metrics import fid
    from segen.registry.promotion.generation import (
        frechet_distance,
        paired_fid_bootstrap,
    )

    rng = np.random.default_rng(4)
    real = rng.normal(size=(40, 8))
    close, far = real + rng.normal(0, 0.1, size=(40, 8)), rng.normal(1.0, 1.5, size=(40, 8))
    assert frechet_distance(real, far) == pytest.approx(
        fid(torch.from_numpy(real), torch.from_numpy(far)), rel=1e-6)
    result = paired_fid_bootstrap(real, close, far, samples=200, confidence=0.95, seed=0)
    assert result["ci_high"] < 0 < result["challenger_metrics"]["fid"]  # lower FID wins
    assert clears_margin(result["ci_low"], result["ci_high"], 1.0, higher_is_better=False)


def test_families_follow_the_register_sections():
    from segen.config import load_params
    from segen.registry.promotion.gate import family_of

    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    assert family_of(params, params.register.model_name).name == "segmentation"
    assert family_of(params, params.register_torchvision.model_name).name == "segmentation"
    assert family_of(params, params.register_dbscan.model_name).name == "clustering"
    generation = family_of(params, params.register_generative.model_prefix + "dcgan")
    assert (generation.name, generation.higher_is_better) == ("generation", False)
    with pytest.raises(ValueError, match="no promotion gate"):
        family_of(params, "someone-elses-model")


class _Server:
    """An mlflow server on a fixed port that a test can stop and start on the same store."""

    def __init__(self, root: Path):
        self.root, self.port, self.stack, self.uri = root, free_port(), ExitStack(), ""

    def start(self) -> None:
        # A generous timeout: on a busy 2-core machine the server takes minutes to start.
        self.uri = self.stack.enter_context(mlflow_server(self.root, self.port, timeout=400))

    def stop(self) -> None:
        self.stack.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, prefect_harness):
    """A project with U-Net versions 1 (medium), 2 (worse), 3 (better) and K-means
    versions 1 and 2, registered on a real mlflow server."""
    from flows.pipeline import single_stage

    root = tmp_path_factory.mktemp("promotion")
    server = _Server(root / "mlflow")
    server.start()
    saved = dict(os.environ)  # the stages also set segen's tracking variables
    os.environ["MLFLOW_TRACKING_URI"] = server.uri
    project = init_project(root / "proj", {"unet": _MEDIUM})
    _binary_shapes(root / "shapes", project / "data")

    def stages(names=_STAGES):
        for name in names:
            single_stage(str(project), str(project / "params.yaml"), name)

    stages()
    write_params(project, {"unet": _WORSE, "kmeans": _KMEANS_WORSE})
    stages(("train_unet", "evaluate_unet", "register_unet", "train_kmeans",
            "evaluate_kmeans", "register_kmeans"))
    write_params(project, {"unet": _BETTER})
    stages(("train_unet", "evaluate_unet", "register_unet"))
    try:
        yield project, server
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def _binary_shapes(scratch: Path, data: Path) -> None:
    """60 generated 32x32 images whose masks say only shape (255) or background (0)."""
    from PIL import Image

    from segen.data.importers import import_pairs
    from segen.data.shapes import generate_shapes_dataset

    generate_shapes_dataset(scratch, seed=7, n_images=60, image_size=32, min_shapes=1,
                            max_shapes=4)
    binary = scratch.parent / "binary-masks"
    binary.mkdir()
    for mask in sorted((scratch / "masks").glob("*.png")):
        values = (np.asarray(Image.open(mask)) > 0).astype(np.uint8) * 255
        Image.fromarray(values).save(binary / mask.name)
    import_pairs(scratch / "images", binary, data, classes=["background", "shape"],
                 class_map=None, max_pixels=MAX_PIXELS)


def _cli(project: Path, *args: str, expect: int = 0) -> dict:
    """`segen ARGS --json`, which must exit with `expect` (3: the gate rejected)."""
    proc = segen_cli(*args, "--json", cwd=project)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _champion(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri, uri).get_registered_model(name).aliases["champion"]


def _reset_champion(project: Path, server: _Server) -> None:
    """Version 1 holds champion again (whatever the tests before this one moved)."""
    from segen.config import load_params
    from segen.project import Project
    from segen.registry.promotion.moves import promote

    if _champion(server.uri, UNET) != "1":
        promote(Project.at(project), load_params(project / "params.yaml"), UNET, 1, force=True,
                reason="reset")
    assert _champion(server.uri, UNET) == "1"


@server_test
def test_gate_force_rollback_and_history_over_a_server(registry):
    project, server = registry
    _reset_champion(project, server)
    before = len(_cli(project, "history", UNET)["events"])

    worse = _cli(project, "promote", UNET, "--version", "2", expect=3)
    assert (worse["decision"], worse["champion"]) == ("rejected", 1)
    report = worse["report"]
    assert report["family"] == "segmentation" and report["metric"] == "mean_iou"
    assert report["n_images"] == 12 and report["ci_high"] < 0  # clearly worse
    assert report["challenger"]["metrics"]["mean_iou"] < report["champion"]["metrics"]["mean_iou"]
    assert "not clearly better" in worse["reason"]
    assert report["test_data_version"] == report["challenger"]["data_version"]

    from segen.config import load_params
    from segen.project import Project
    from segen.registry.promotion.moves import alias_history, promote, rollback

    params = load_params(project / "params.yaml")
    better = promote(Project.at(project), params, UNET)  # the latest version: 3
    assert (better["version"], better["decision"], better["previous"]) == (3, "promoted", 1)
    assert better["report"]["ci_low"] > better["report"]["margin"]
    assert _champion(server.uri, UNET) == "3"
    _check_report_attached(server.uri, better)

    proc = segen_cli("promote", UNET, "--version", "2", "--force", cwd=project)
    assert proc.returncode == 2 and "--reason" in proc.stderr
    forced = promote(Project.at(project), params, UNET, 2, force=True,
                     reason="demo for the customer")
    assert (forced["decision"], _champion(server.uri, UNET)) == ("forced", "2")
    back = rollback(Project.at(project), params, UNET, reason="v2 is worse")
    assert (back["champion"], _champion(server.uri, UNET)) == (3, "3")

    expected = [("rejected", 1, 1, 2), ("promoted", 1, 3, 3), ("forced", 3, 2, 2),
                ("rollback", 2, 3, 3)]
    server.stop()
    server.start()  # same store, same port: the history lives in the registry
    events = _cli(project, "history", UNET)["events"]
    assert (events[0]["decision"], events[0]["previous"], events[0]["new"]) == ("first", None, 1)
    assert [(e["decision"], e["previous"], e["new"], e["candidate"])
            for e in events[before:]] == expected
    assert [e["seq"] for e in events] == list(range(1, before + 5))
    mine = events[before:]
    assert mine[2]["reason"] == "demo for the customer" and mine[3]["reason"] == "v2 is worse"
    assert all(e["user"] and e["time"].endswith("+00:00") for e in events)
    assert mine[1]["report"].startswith("runs:/")
    assert alias_history(Project.at(project), params, UNET) == events
    text = segen_cli("history", UNET, cwd=project).stdout
    assert "v1->v3" in text and "demo for the customer" in text

    again = rollback(Project.at(project), params, UNET, reason="back to the first")
    assert (again["previous"], again["champion"]) == (3, 1)


def _check_report_attached(uri: str, result: dict) -> None:
    from mlflow.tracking import MlflowClient

    registry = MlflowClient(uri, uri)
    version = registry.get_model_version(UNET, "3")
    assert version.tags["segen.gate.decision"] == "promoted"
    run_id = version.run_id
    listed = [a.path for a in registry.list_artifacts(run_id, "promotion")]
    assert any(p.endswith("-promoted.json") for p in listed)
    text = [p for p in listed if p.endswith(".txt")][0]
    local = registry.download_artifacts(run_id, text)
    table = Path(local).read_text()
    assert "challenger v3" in table and "champion v1" in table and "interval" in table
    assert result["report_uri"].startswith(f"runs:/{run_id}/promotion/")


@server_test
def test_clustering_gate_and_first_champion(registry):
    from mlflow.tracking import MlflowClient

    from segen.config import load_params
    from segen.project import Project
    from segen.registry.promotion.moves import promote

    project, server = registry
    params = load_params(project / "params.yaml")
    MlflowClient(server.uri, server.uri).delete_registered_model_alias(KMEANS, "champion")
    first = promote(Project.at(project), params, KMEANS, 1)
    assert (first["decision"], first["champion"]) == ("first", 1)
    second = promote(Project.at(project), params, KMEANS, 2)
    report = second["report"]
    assert report["family"] == "clustering" and report["metric"] == "ari"
    assert set(report["challenger"]["metrics"]) == {"ari", "silhouette"}
    assert (second["decision"], second["champion"]) == ("rejected", 1)
    assert report["ci_high"] < 0  # clearly worse, not just not clearly better
    assert report["challenger"]["metrics"]["ari"] < report["champion"]["metrics"]["ari"]
    assert MlflowClient(server.uri, server.uri).get_registered_model(KMEANS).aliases == {
        "champion": "1"}


# Run by each of the two promoting processes: a promotion of test-unet v3 through `segen
# promote` (argv "cli": the project's writer lock, then the model's) or through
# segen.registry.promotion.moves.promote (argv "api": the model's lock only), with barrier
# marks in $BARRIER, named PID_KIND_LOCK: at (about to take the filelock LOCK), in (holds
# it), commit (judged, compare-and-set passed, about to move the alias). Before moving the
# alias a process waits until the other is about to move it too (nothing kept them apart:
# both move it) or has waited at a lock for 3 s without getting in (a lock keeps it out).
_PROMOTE_WITH_BARRIER = """
import json, os, sys, time
from pathlib import Path

import filelock

from segen.registry.promotion import moves

barrier, pid = Path(os.environ["BARRIER"]), os.getpid()
real_acquire, real_commit = filelock.BaseFileLock.acquire, moves._commit


def mark(kind, lock=""):
    (barrier / f"{pid}_{kind}_{lock}").touch()


def acquire(self, *args, **kwargs):
    mark("at", Path(self.lock_file).name)
    held = real_acquire(self, *args, **kwargs)
    mark("in", Path(self.lock_file).name)
    return held


def other_is_kept_out_or_committing():
    marks = [p.name.split("_", 2) + [p.stat().st_mtime] for p in barrier.iterdir()]
    theirs = {(kind, lock): when for who, kind, lock, when in marks if who != str(pid)}
    waiting = [when for (kind, lock), when in theirs.items()
               if kind == "at" and ("in", lock) not in theirs]
    return ("commit", "") in theirs or any(time.time() - when >= 3.0 for when in waiting)


def commit(*args):
    mark("commit")
    deadline = time.monotonic() + 300
    while not other_is_kept_out_or_committing() and time.monotonic() < deadline:
        time.sleep(0.05)
    return real_commit(*args)


filelock.BaseFileLock.acquire, moves._commit = acquire, commit
if sys.argv[1] == "cli":
    from segen.cli.main import main

    sys.exit(main(["promote", "test-unet", "--version", "3", "--json"]))
from segen.config import load_params
from segen.project import Project

print(json.dumps(moves.promote(Project.at(Path.cwd()), load_params(Path("params.yaml")),
                               "test-unet", 3)))
"""


@server_test
@pytest.mark.parametrize("entry", ["cli", "api"])
def test_concurrent_promotions_record_one_move(registry, tmp_path, entry):
    """Two promotions of v3 wait together at the lock the test holds while they start (cli:
    the project's writer lock; api: the model's lock, all the Python API takes). Once it is
    free, one promotes while a lock keeps the other out, which then finds v3 champion
    already. Without the locks both would pass the barrier and move the alias."""
    from segen.locking import project_lock
    from segen.project import Project
    from segen.registry.promotion.lock import model_lock

    project, server = registry
    _reset_champion(project, server)
    before = len(_cli(project, "history", UNET)["events"])
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    cmd = [sys.executable, "-c", _PROMOTE_WITH_BARRIER, entry]
    held = (project_lock(Project.at(project), "test") if entry == "cli"
            else model_lock(Project.at(project), UNET, 5.0))
    lock = "project.lock" if entry == "cli" else f"{UNET}.lock"
    procs = []
    try:
        with held:
            procs += [subprocess.Popen(cmd, cwd=project, text=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env={**os.environ,
                                                                    "BARRIER": str(barrier)})
                      for _ in range(2)]
            _wait_for(lambda: len({m.name.split("_")[0] for m in (
                *barrier.glob(f"*_at_{lock}"), *barrier.glob("*_commit_"))}) == 2, procs)
            # both wait at the lock the test holds (with no lock, both would be committing)
            assert not list(barrier.glob(f"*_in_{lock}"))
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    decisions = sorted(json.loads(out.strip().splitlines()[-1])["decision"] for out, _ in outs)
    assert decisions == ["already_champion", "promoted"]
    assert len(list(barrier.glob("*_commit_"))) == 1  # one got as far as moving the alias
    events = _cli(project, "history", UNET)["events"]
    assert len(events) == before + 1
    assert (events[-1]["decision"], events[-1]["previous"], events[-1]["new"]) == (
        "promoted", 1, 3)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert _champion(server.uri, UNET) == "3"


def _wait_for(condition, procs: list[subprocess.Popen], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        failed = [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        assert not failed, failed
        assert time.monotonic() < deadline, "the promotions never reached the lock"
        time.sleep(0.05)


@server_test
def test_missing_test_data_or_model_fails_clearly_and_moves_nothing(registry):
    from segen.config import load_params
    from segen.project import Project
    from segen.registry.promotion.moves import promote

    project, server = registry
    params, before = load_params(project / "params.yaml"), _champion(server.uri, UNET)
    store = project / ".segen" / "store" / "preprocess"
    (key,) = [p.name for p in store.iterdir() if not p.name.startswith(".")]
    (store / key).rename(store / f".{key}-away")
    try:
        version = 2 if before != "2" else 1
        with pytest.raises(FileNotFoundError, match=r"rerun `segen run`"):
            promote(Project.at(project), params, UNET, version)
    finally:
        (store / f".{key}-away").rename(store / key)
    with pytest.raises(ValueError, match="no registered version"):
        promote(Project.at(project), params, "test-dbscan")  # its stages did not run here
    with pytest.raises(ValueError, match="no promotion gate"):
        promote(Project.at(project), params, "no-such-model")
    assert _champion(server.uri, UNET) == before
