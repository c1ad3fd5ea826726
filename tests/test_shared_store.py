"""The shared artifact store on a real S3 server (moto, on 127.0.0.1), issue 11 item 2: what
one store publishes is a hit in another folder; a half-uploaded key is a miss; a discarded
key is gone from the bucket too; a missing bucket or a dead endpoint is named. And the
pipeline itself: a second clone of a project, in another folder, runs all cached through
the bucket, its Prefect tasks Cached.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import UNET, git, init_project, segen_cli, statuses
from servers import bucket_keys, free_port, s3_server

from segen.pipeline.shared_store import SharedStore, SharedStoreError, shared_store
from segen.pipeline.store import ArtifactStore
from segen.retry import ServerUnavailable

pytestmark = pytest.mark.timeout(600)
BUCKET = "segen-shared"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("moto"), BUCKET) as env:
        yield env


@pytest.fixture
def shared(s3, monkeypatch, request) -> SharedStore:
    """A SharedStore on its own prefix of the bucket (one per test)."""
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SEGEN_STORE_URL", f"s3://{BUCKET}/{request.node.name}")
    store = shared_store()
    assert store is not None and store.prefix == request.node.name
    return store


def _objects(store: SharedStore) -> dict[str, bytes]:
    client = store._client
    names = store._list(store.prefix + "/")
    return {n.removeprefix(store.prefix + "/"):
            client.get_object(Bucket=store.bucket, Key=n)["Body"].read() for n in names}


def _publish(store: ArtifactStore, files: dict[str, str], key: str = "k"):
    with store.staging("s") as staged:
        for name, text in files.items():
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_text(text)
        return store.publish("s", key, staged, {"n": len(files)})


def test_published_here_is_a_hit_in_another_folder(shared, tmp_path: Path) -> None:
    first = ArtifactStore(tmp_path / "a", shared)
    made = _publish(first, {"model.pt": "weights", "nested/report.txt": "fine"})
    marker = json.loads(_objects(shared)["artifacts/s/k.json"])
    assert set(marker["files"]) == {"model.pt", "nested/report.txt", "_meta.json"}
    assert marker["files"]["model.pt"] == len("weights")

    other = ArtifactStore(tmp_path / "b", shared)
    found = other.load("s", "k")
    assert found is not None and (found.key, found.digest, found.info) == \
        (made.key, made.digest, made.info)
    assert Path(found.path) == tmp_path / "b" / "s" / "k"  # its own folder, not a's
    assert (tmp_path / "b/s/k/nested/report.txt").read_text() == "fine"
    assert sorted(p.name for p in (tmp_path / "b" / "s").iterdir()) == ["k"]  # no staging
    assert ArtifactStore(tmp_path / "c", shared).load("s", "other-key") is None


def test_a_half_uploaded_key_is_a_miss(shared, tmp_path: Path) -> None:
    """A killed uploader sent files but not the commit marker (it goes last): not a hit."""
    for name in ("_meta.json", "model.pt"):
        shared._client.put_object(Bucket=shared.bucket, Body=b"half",
                                  Key=shared._key(f"artifacts/s/k/dead-upload/{name}"))
    store = ArtifactStore(tmp_path / "a", shared)
    assert store.load("s", "k") is None
    assert not (tmp_path / "a" / "s" / "k").exists()
    _publish(store, {"model.pt": "whole"})  # the next publisher sends it whole
    fetched = ArtifactStore(tmp_path / "b", shared).load("s", "k")
    assert Path(fetched.path, "model.pt").read_text() == "whole"


@pytest.mark.parametrize("marker", [b"not json", b'{"upload": 1}',
                                    b'{"upload": "artifacts/s/k/u", "files": {"../../x": 1}}',
                                    b'{"upload": "artifacts/other/k/u", "files": {}}'])
def test_a_broken_or_hostile_marker_is_a_miss_then_overwritten(shared, tmp_path: Path,
                                                                marker: bytes) -> None:
    """A marker segen did not write (garbage, or paths out of the key folder) is never
    followed: a miss, and the next publisher's marker replaces it."""
    shared._client.put_object(Bucket=shared.bucket, Key=shared._key("artifacts/s/k.json"),
                              Body=marker)
    store = ArtifactStore(tmp_path / "a", shared)
    assert store.load("s", "k") is None
    assert not (tmp_path / "x").exists() and not (tmp_path / "a" / "s" / "k").exists()
    _publish(store, {"out.txt": "good"})
    fetched = ArtifactStore(tmp_path / "b", shared).load("s", "k")
    assert Path(fetched.path, "out.txt").read_text() == "good"


def test_two_uploads_of_one_key_never_mix(shared, tmp_path: Path, monkeypatch) -> None:
    """Two machines trained one key at once (different weights) and each looked before the
    other's marker landed: the marker that lands last names one whole set, its files and
    its own _meta.json together."""
    a, b = ArtifactStore(tmp_path / "a"), ArtifactStore(tmp_path / "b")  # local only
    made_a = _publish(a, {"model.pt": "weights of a"})
    made_b = _publish(b, {"model.pt": "weights of b, longer"})
    with monkeypatch.context() as both_looked:
        both_looked.setattr(SharedStore, "has", lambda self, stage, key: False)
        shared.upload("s", "k", Path(made_a.path))
        shared.upload("s", "k", Path(made_b.path))
    got = ArtifactStore(tmp_path / "c", shared).load("s", "k")
    assert Path(got.path, "model.pt").read_text() == "weights of b, longer"
    assert got.digest == made_b.digest != made_a.digest


def test_a_result_made_before_sharing_is_sent_on_its_next_hit(shared, tmp_path: Path) -> None:
    _publish(ArtifactStore(tmp_path / "a"), {"out.txt": "local only"})
    assert _objects(shared) == {}
    assert ArtifactStore(tmp_path / "a", shared).load("s", "k") is not None
    fetched = ArtifactStore(tmp_path / "b", shared).load("s", "k")
    assert Path(fetched.path, "out.txt").read_text() == "local only"


def test_discard_removes_the_shared_copy(shared, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a", shared)
    _publish(store, {"registration.json": '{"version": 1}'})
    store.discard("s", "k")  # its model version was deleted: it must not come back
    assert _objects(shared) == {}
    assert ArtifactStore(tmp_path / "b", shared).load("s", "k") is None


def test_a_missing_bucket_is_named_with_the_fix(s3, monkeypatch, tmp_path: Path) -> None:
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SEGEN_STORE_URL", "s3://no-such-bucket/store")
    store = ArtifactStore(tmp_path, shared_store())
    with pytest.raises(SharedStoreError, match="no-such-bucket.*NoSuchBucket.*create bucket"):
        store.load("s", "k")


def test_an_unreachable_store_is_retried_then_named(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k"), monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("SEGEN_STORE_URL", "s3://segen/store")
    monkeypatch.setenv("SEGEN_RETRY_TRIES", "2"), monkeypatch.setenv("SEGEN_RETRY_BACKOFF_S", "0")
    with pytest.raises(ServerUnavailable, match=r"shared artifact store \(S3\).*2 tries.*"
                                                 r"segen team up"):
        ArtifactStore(tmp_path, shared_store()).load("s", "k")


@pytest.mark.parametrize("url", ["/local/folder", "s3://", "gs://bucket/x"])
def test_a_url_that_is_not_s3_is_refused(url, monkeypatch) -> None:
    monkeypatch.setenv("SEGEN_STORE_URL", url)
    with pytest.raises(SharedStoreError, match="expected s3://BUCKET"):
        shared_store()


@pytest.mark.slow
def test_a_second_clone_runs_all_cached_through_the_bucket(s3, tmp_path: Path) -> None:
    """Two folders, one bucket (and one registry): the clone's run pulls data/ from DVC,
    fetches every stage's artifact and Prefect record, and runs no stage body."""
    env = {**s3, "SEGEN_STORE_URL": f"s3://{BUCKET}/pipeline",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'team-registry.db'}"}
    first = init_project(tmp_path / "first")
    ran = segen_cli("run", "--stages", *UNET, "--json", cwd=first, env=env)
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert set(statuses(json.loads(ran.stdout.splitlines()[-1])).values()) == {"ran"}
    git(first, "add", "data.dvc", ".gitignore"), git(first, "commit", "-qm", "data version")

    second = tmp_path / "elsewhere" / "second"
    subprocess.run(["git", "clone", "-q", str(first), str(second)], check=True)
    again = segen_cli("run", "--stages", *UNET, "--json", cwd=second, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    summary = json.loads(again.stdout.splitlines()[-1])
    assert set(statuses(summary).values()) == {"cached"}, statuses(summary)
    assert summary["data_source"] == "pulled"
    trained = next(s for s in summary["stages"] if s["name"] == "train_unet")
    assert any((second / ".segen/store/train_unet" / trained["key"]).iterdir())
    keys = {k.split("/")[-1] for k in bucket_keys(s3, BUCKET, "pipeline/prefect/records/")}
    assert {s["key"] for s in summary["stages"]} <= keys  # Prefect's records are shared

