"""Servers that come and go: a real `mlflow server` killed (SIGKILL, its whole process group)
in the middle of a registration, then started again on the same store and port.

The registration under test is registration.register_trained on hand-made upstream results
(no training): its model is a pyfunc of a folder of many small files, so the upload takes
long enough for a kill to land inside it. The kill fires when the new model's files start
to appear in the server's artifact folder.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, mlflow_server

from segen.config import MlflowParams, RegisterParams
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.retry import Server, ServerUnavailable, call_with_retries, policy
from segen.tracking import client, configure_tracking

MODEL = "segen-faults"
QUIET = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # 150-file downloads, no bars
REGISTER = RegisterParams(model_name=MODEL, champion_alias="champion")
N_FILES = 150  # files in the trained model's folder: uploaded one request each


def _project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the test's server or store
    project = Project.at(root)
    project.data.mkdir(parents=True)
    (project.data / "manifest.csv").write_text("image,mask,split\na.png,a_mask.png,train\n")
    return project


def _upstream(root: Path) -> dict[str, StageResult]:
    trained, evaluated = root / "trained", root / "evaluated"
    trained.mkdir(parents=True)
    evaluated.mkdir()
    for i in range(N_FILES):
        (trained / f"part-{i:04d}.bin").write_bytes(os.urandom(2048))
    (evaluated / "report.txt").write_text("mean_iou 0.5\n")

    def result(stage: str, path: Path, **info: Any) -> StageResult:
        return StageResult(stage, f"key-{stage}", "digest", str(path), {"params": {}, **info})

    return {"version_data": result("version_data", root, data_version="d" * 32),
            "preprocess": result("preprocess", root, train=1, val=1, test=1),
            "train_faults": result("train_faults", trained),
            "evaluate_faults": result("evaluate_faults", evaluated, metrics={"mean_iou": 0.5})}


class _Folder:
    """A pyfunc whose model is a folder (built lazily: mlflow imports only inside tests)."""

    @staticmethod
    def log(model_dir: Path, name: str | None) -> Any:
        import mlflow.pyfunc

        class FolderModel(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):  # untyped: MLflow reads type hints
                return model_input

        return mlflow.pyfunc.log_model(name="model", python_model=FolderModel(),
                                       artifacts={"folder": str(model_dir)},
                                       pip_requirements=["mlflow"], registered_model_name=name)


def _register(project: Project, upstream: dict[str, StageResult], out: Path) -> dict[str, Any]:
    from segen.registry.registration import register_trained

    out.mkdir(parents=True, exist_ok=True)
    return register_trained(project, "register_faults", "register", _Folder.log, upstream,
                            REGISTER, out)


def _server_group(port: int) -> int:
    """The process group of the `mlflow server` listening on port (servers.py starts each
    server as the leader of its own group)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server" in args and str(port).encode() in args and \
                any(a.endswith(b"mlflow") for a in args):
            return os.getpgid(int(cmdline.parent.name))
    raise AssertionError(f"no mlflow server on port {port}")


def _kill_when_uploading(root: Path, port: int, timeout: float = 120) -> threading.Thread:
    """A thread that SIGKILLs the server once a new model's folder is part uploaded."""
    before = set(root.rglob("part-*.bin"))

    def kill() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(root.rglob("part-*.bin")) - before) >= 10:
                os.killpg(_server_group(port), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def _versions_lacking_files() -> list[str]:
    """Every registered version's model downloaded: which miss the MLmodel or a file."""
    import mlflow.artifacts

    registry, lacking = client(), []
    for version in registry.search_model_versions(f"name='{MODEL}'"):
        uri = registry.get_model_version_download_uri(MODEL, version.version)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        except Exception:  # noqa: BLE001 (nothing there to download counts as lacking)
            lacking.append(str(version.version))
            continue
        parts = list(local.rglob("part-*.bin"))
        if not (local / "MLmodel").is_file() or len(parts) != N_FILES:
            lacking.append(str(version.version))
    return sorted(lacking)


def _champion() -> str:
    return str(client().get_registered_model(MODEL).aliases["champion"])


def test_a_registration_cut_by_a_dying_server_leaves_no_half_version(tmp_path: Path,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("SEGEN_RETRY_TRIES", "3")  # 0 + 2 s of pauses: the server stays dead
    root, port = tmp_path / "mlflow", free_port()
    project = _project(tmp_path / "project", monkeypatch)
    upstream = _upstream(tmp_path / "upstream")
    with mlflow_server(root, port) as uri:
        configure_tracking(project, MlflowParams(tracking_uri=uri, experiment="faults"))
        assert _register(project, upstream, tmp_path / "out1")["version"] == 1
        killer = _kill_when_uploading(root, port)
        start = time.monotonic()
        with pytest.raises(ServerUnavailable) as failure:
            _register(project, upstream, tmp_path / "out2")
        seconds = time.monotonic() - start
        killer.join()
    message = str(failure.value)
    print(f"\nregistration failed after {seconds:.1f} s; the CLI prints: segen: error: "
          f"{message}")
    assert f"the MLflow server at {uri} did not answer after 3 tries" in message
    assert f"mlflow server --host 127.0.0.1 --port {port}" in message
    with mlflow_server(root, port):
        assert [int(v.version) for v in client().search_model_versions(f"name='{MODEL}'")] == [1]
        assert _versions_lacking_files() == []
        assert _champion() == "1"
        summary = _register(project, upstream, tmp_path / "out3")
        assert (summary["version"], summary["champion"]) == (2, False)
        assert _versions_lacking_files() == [] and _champion() == "1"


def test_a_server_back_within_the_retries_lets_the_registration_finish(tmp_path: Path,
                                                                        monkeypatch) -> None:
    """Killed mid-upload and started again on the same port: MLflow's client, retrying under
    segen's policy (6 tries: 30 s of pauses), carries the registration through."""
    monkeypatch.setenv("SEGEN_RETRY_TRIES", "6")
    root, port = tmp_path / "mlflow", free_port()
    project = _project(tmp_path / "project", monkeypatch)
    upstream = _upstream(tmp_path / "upstream")
    with ExitStack() as servers:
        uri = servers.enter_context(mlflow_server(root, port))
        configure_tracking(project, MlflowParams(tracking_uri=uri, experiment="faults"))
        killer = _kill_when_uploading(root, port)

        def restart() -> None:
            killer.join()
            servers.enter_context(mlflow_server(root, port))

        restarter = threading.Thread(target=restart, daemon=True)
        restarter.start()
        summary = _register(project, upstream, tmp_path / "out")
        restarter.join()
        assert (summary["version"], summary["champion"]) == (1, True)
        assert _versions_lacking_files() == []


def test_an_unfinished_version_is_deleted_by_the_next_registration(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A version made before its model was fully logged (here by hand: a PENDING logged
    model with no files) goes at the next registration; one an alias holds stays."""
    project = _project(tmp_path / "project", monkeypatch)
    upstream = _upstream(tmp_path / "upstream")
    configure_tracking(project, MlflowParams(tracking_uri=None, experiment="faults"))
    _register(project, upstream, tmp_path / "out1")
    registry = client()
    experiment = registry.get_experiment_by_name("faults").experiment_id
    empty = registry.create_logged_model(experiment_id=experiment)
    registry.create_model_version(MODEL, source=f"models:/{empty.model_id}",
                                  model_id=empty.model_id)
    assert _versions_lacking_files() == ["2"]
    assert _register(project, upstream, tmp_path / "out2")["version"] == 3
    assert sorted(int(v.version) for v in registry.search_model_versions(f"name='{MODEL}'")) \
        == [1, 3]


def test_the_mlflow_policy_retries_then_names_the_server(tmp_path: Path, monkeypatch) -> None:
    """Nothing listens on the port: the default policy (5 tries, pauses 0+2+4+8 s) runs
    out, and the error says where and what to do. The total time is printed."""
    monkeypatch.delenv("SEGEN_RETRY_TRIES", raising=False)
    monkeypatch.delenv("SEGEN_RETRY_BACKOFF_S", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    configure_tracking(Project.at(tmp_path), MlflowParams(tracking_uri=uri, experiment="x"))
    registry = client()
    registry.search_registered_models  # noqa: B018 (resolve the method before timing)
    start = time.monotonic()
    with pytest.raises(ServerUnavailable) as failure:
        registry.search_registered_models()
    seconds = time.monotonic() - start
    print(f"\nMLflow, default policy: failed after {seconds:.1f} s: {failure.value}")
    assert f"the MLflow server at {uri} did not answer after 5 tries over 14 s" in \
        str(failure.value)
    assert 13.5 <= seconds < 30  # the pauses were waited, and nothing much beyond them


def test_call_with_retries_tries_again_then_gives_up(monkeypatch) -> None:
    """segen's own retry loop (used for DVC pushes) against a port where nothing listens:
    every try made, the pauses waited, a clear error at the end."""
    monkeypatch.setenv("SEGEN_RETRY_TRIES", "3")
    url, tries = f"http://127.0.0.1:{free_port()}/", []

    def fetch() -> None:
        tries.append(time.monotonic())
        urllib.request.urlopen(url, timeout=5)

    server = Server("test server", url, "start it")
    start = time.monotonic()
    with pytest.raises(ServerUnavailable) as failure:
        call_with_retries(fetch, server, transient=lambda err: isinstance(err, OSError))
    seconds = time.monotonic() - start
    print(f"\nsegen's loop, 3 tries: failed after {seconds:.2f} s: {failure.value}")
    assert len(tries) == 3 and sum(policy().pauses()) == 2.0
    assert 2.0 <= seconds < 5
    assert str(failure.value).startswith(f"the test server at {url} did not answer after 3 "
                                         "tries over 2 s (last error:")
    with pytest.raises(KeyError):  # an error that is not the server's is not retried
        call_with_retries(lambda: {}["x"], server, transient=lambda err: False)


def test_a_push_to_a_dvc_remote_that_does_not_answer_fails_clearly(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """`dvc push` to an HTTP remote where nothing listens: tried under the policy (2 tries
    here), then one line naming the remote."""
    from dvc.config import Config
    from dvc.repo import Repo

    from segen.data.versioning import REMOTE, open_repo, push

    monkeypatch.setenv("SEGEN_RETRY_TRIES", "2")
    Repo.init(str(tmp_path), no_scm=True).close()
    project = Project.at(tmp_path)
    project.data.mkdir()
    (project.data / "a.txt").write_text("a")
    url = f"http://127.0.0.1:{free_port()}/dvc"
    with Config(str(tmp_path / ".dvc")).edit("local") as conf:
        conf["remote"][REMOTE] = {"url": url}
    with open_repo(project) as repo:
        repo.add(str(project.data))
        with pytest.raises(ServerUnavailable) as failure:
            push(repo, project, url)
    print(f"\nDVC push: {failure.value}")
    assert str(failure.value).startswith(f"the DVC remote at {url} did not answer after 2 "
                                         "tries")
