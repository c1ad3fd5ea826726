"""Dataset versions in DVC: make data.dvc record what is in data/, push and pull it."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from segen.config import DataParams, DatasetParams
from segen.faults import failpoint
from segen.hashing import hash_tree
from segen.pipeline.store import StageResult
from segen.project import Project, ProjectError
from segen.retry import Server, call_with_retries

REMOTE = "segen"


log = logging.getLogger("segen.version_data")


@contextmanager
def open_repo(project: Project) -> Iterator["Repo"]:  # noqa: F821 (dvc imported lazily)
    from dvc.repo import Repo

    project.require_dvc()
    with Repo(str(project.root)) as repo:
        yield repo


def remote_url(project: Project, params: DataParams) -> str:
    """$SEGEN_DVC_REMOTE_URL (team mode: the stack's bucket) wins over params.data.remote; a
    local remote path is expanded (~) and made absolute against the project root."""
    if os.environ.get("SEGEN_DVC_REMOTE_URL"):
        return os.environ["SEGEN_DVC_REMOTE_URL"]
    if "://" in params.remote:
        return params.remote
    return str((project.root / Path(params.remote).expanduser()).resolve())


def configure_remote(project: Project, params: DataParams) -> None:
    """Point the default DVC remote at remote_url (machine-local config); an S3 remote on
    a server of one's own (moto, MinIO) is reached at $SEGEN_DVC_ENDPOINT_URL. Credentials
    come from the AWS_* variables, never from the config file."""
    from dvc.config import Config

    url = remote_url(project, params)
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    remote = {"url": url}
    if url.startswith("s3://") and os.environ.get("SEGEN_DVC_ENDPOINT_URL"):
        remote["endpointurl"] = os.environ["SEGEN_DVC_ENDPOINT_URL"]
    config = Config(str(project.root / ".dvc"))
    with config.edit("local") as conf:
        conf["remote"][REMOTE] = remote
        conf["core"]["remote"] = REMOTE


def recorded_version(project: Project) -> str | None:
    """The .dir md5 that data.dvc records (stale until `dvc add`), or None."""
    import yaml

    if not project.data_dvc.is_file():
        return None
    outs = yaml.safe_load(project.data_dvc.read_text()).get("outs") or [{}]
    return outs[0].get("md5")


def track_data(project: Project, params: DataParams) -> str:
    """`dvc add data` then `dvc push`; returns the data version now recorded.

    Under `dvc repro` (DVC_STAGE is set) data/ is read-locked by DVC itself, so the
    stage only checks that data.dvc is current and leaves pushing to `dvc push`.
    """
    if os.environ.get("DVC_STAGE"):
        return _check_recorded(project)
    failpoint("data.record")
    configure_remote(project, params)
    before = recorded_version(project)
    with open_repo(project) as repo:
        repo.scm_context.quiet = True  # its git hints came once per handler: say it once here
        repo.add(str(project.data))
        failpoint("data.push")
        push(repo, project, remote_url(project, params))
    version = recorded_version(project)
    assert version is not None, "dvc add wrote no md5 into data.dvc"
    if version != before:
        log.info("data.dvc now records %s; to keep this data version in git, run: "
                 "git add data.dvc .gitignore && git commit", version)
    return version


def push(repo: "Repo", project: Project, url: str) -> None:  # noqa: F821
    """`dvc push` of data.dvc to the remote at url. To a server (a URL that is not file://)
    it is tried again under segen's retry policy (segen.retry), then fails naming the
    remote: a push sends only what the remote lacks, so trying again is safe."""
    def send() -> None:
        repo.push(targets=[str(project.data_dvc)], remote=REMOTE)

    if urlsplit(url).scheme in ("", "file"):
        return send()  # a folder: a failure is the disk's, and waiting will not mend it
    remote = Server("DVC remote", url, "start it, or point data.remote in params.yaml at "
                    "one that answers, then rerun (or `dvc push` once it is back)")
    call_with_retries(send, remote, transient=_network_failure)


def _network_failure(err: Exception) -> bool:
    from dvc.exceptions import UploadError

    return isinstance(err, (UploadError, OSError))  # DVC logs each file's own error


def _check_recorded(project: Project) -> str:
    version = recorded_version(project)
    changed = True
    if version is not None:
        with open_repo(project) as repo:
            changed = bool(repo.status(targets=[str(project.data_dvc)]))
    if changed:
        raise ProjectError(f"data/ differs from what data.dvc records ({version}); inside "
                           "`dvc repro` segen cannot re-record it. Run `dvc add data` (or "
                           "`segen run`) first, then `dvc repro`.")
    return version


def ensure_data(project: Project, params: DataParams, dataset: DatasetParams) -> str:
    """Materialise data/ when absent: from DVC (cache or remote), else generate the default.

    Returns what happened, for the run summary.
    """
    if project.data.is_dir() and any(project.data.iterdir()):
        return "present"
    if recorded_version(project) is not None and _pull(project, params):
        return "pulled"
    from segen.data.shapes import generate_shapes_dataset

    log.info("data/ is absent: generating the default shapes dataset (seed %d)", dataset.seed)
    generate_shapes_dataset(project.data, seed=dataset.seed, n_images=dataset.n_images,
                            image_size=dataset.image_size, min_shapes=dataset.min_shapes,
                            max_shapes=dataset.max_shapes)
    return "generated"


def _pull(project: Project, params: DataParams) -> bool:
    from dvc.exceptions import DvcException

    configure_remote(project, params)
    try:
        with open_repo(project) as repo:
            repo.pull(targets=[str(project.data_dvc)], remote=REMOTE)
    except DvcException as err:
        log.info("data/ could not be pulled from DVC (%s)", str(err).splitlines()[0])
        return False
    return project.data.is_dir()


def data_content_key(project: Project) -> str:
    if not project.data.is_dir():
        raise ProjectError(f"{project.data} does not exist. Run `segen run` (which generates "
                           "the default dataset), `dvc pull`, or `segen data import-pairs`.")
    return hash_tree(project.data)


def data_dvc_agrees(project: Project, result: StageResult) -> bool:
    """A stored result holds only while data.dvc still records that version."""
    return recorded_version(project) == result.info["data_version"]
