"""MLflow set-up: embedded SQLite store under .segen/ unless a server is configured.

Against a server, every MLflow request (segen's and MLflow's own, e.g. the artifact uploads
inside log_model) is retried by MLflow's HTTP client under segen's one retry policy
(segen.retry), and once the tries run out the calls made through client() and start_run()
fail with ServerUnavailable: the server's URI and how to bring it back, not a traceback.
"""
from __future__ import annotations

import functools
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from segen.config import MlflowParams
from segen.project import Project
from segen.redact import redact, redacted
from segen.retry import Policy, Server, ServerUnavailable, policy, short

_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"


_SET_BY_SEGEN = "SEGEN_SET_MLFLOW_TRACKING_URI"  # the URI configure_tracking chose itself


def _user_uri() -> str | None:
    """MLFLOW_TRACKING_URI unless segen itself put it there (for another project earlier in
    this process: that is not the user's choice)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return None if uri and uri == os.environ.get(_SET_BY_SEGEN) else uri


def tracking_uri(project: Project, params: MlflowParams) -> str:
    """The user's MLFLOW_TRACKING_URI wins, then params.yaml, then the embedded SQLite store."""
    return _user_uri() or params.tracking_uri or f"sqlite:///{project.mlflow_db}"


def configure_tracking(project: Project, params: MlflowParams) -> str:
    """Point this process (and lazily imported mlflow) at the store; no mlflow import."""
    uri = tracking_uri(project, params)
    if not _user_uri():  # the marker stays while the user's URI rules: restoring the old
        os.environ[_SET_BY_SEGEN] = uri  # segen-set URI later must still read as segen's
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ[_EXPERIMENT_ENV] = params.experiment
    os.environ.update(mlflow_retry_settings(policy()))
    if redact(uri) != uri:  # MLflow prints "View run at <URI>": not with credentials in it
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    project.state.mkdir(parents=True, exist_ok=True)
    return uri


def mlflow_retry_settings(rules: Policy) -> dict[str, str]:
    """The policy in MLflow's own terms: its HTTP client retries each request (urllib3, with
    the pauses Policy.pauses lists). No jitter, so the time a failure reports is the time
    spent. segen's policy replaces MLflow's default (7 retries, ~4 minutes per request)."""
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(rules.tries - 1),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(rules.backoff_s),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}


def mlflow_server() -> Server:
    """The configured MLflow server, and what to do when it does not answer."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    where = urlsplit(uri)
    start = f"mlflow server --host {where.hostname} --port {where.port or 80} " \
        "--backend-store-uri ... (its store as before)"
    return Server("MLflow server", uri, f"start it again ({start}) or point segen at a "
                  "running one with mlflow.tracking_uri in params.yaml or MLFLOW_TRACKING_URI, "
                  "then rerun: the finished stages are cached")


def server_down(err: BaseException) -> bool:
    """Whether err (or an error it was raised from) is the server not answering: refused or
    dropped connections, timeouts, or 5xx answers after MLflow's retries."""
    import requests
    from urllib3.exceptions import MaxRetryError, ProtocolError

    gone = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError,
            requests.exceptions.ChunkedEncodingError, MaxRetryError, ProtocolError)
    if isinstance(err, ServerUnavailable):
        return True
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, gone):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def server_errors() -> Iterator[None]:
    """Turn a server that stopped answering into ServerUnavailable (also a decorator)."""
    try:
        yield
    except ServerUnavailable:
        raise
    except Exception as err:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri.startswith(("http://", "https://")) or not server_down(err):
            raise
        raise ServerUnavailable(mlflow_server(), *_mlflow_tries(), _reason(err)) from None


def _reason(err: BaseException) -> str:
    """The socket's own words when there are some ("[Errno 111] Connection refused"), not
    the layers of wrapping around them."""
    text = short(err, limit=10_000)
    return text[text.index("[Errno"):].rstrip(")'\"") if "[Errno" in text else short(err)


def _mlflow_tries() -> tuple[int, float]:
    """(tries, seconds of pauses) of the retries MLflow's client made, from its settings."""
    retries = int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7))  # MLflow's default
    rules = Policy(retries + 1, int(os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)))
    return rules.tries, sum(rules.pauses())


@contextmanager
def start_run(project: Project, run_name: str, run_id: str | None = None,
              tags: dict[str, str] | None = None) -> Iterator[Any]:
    """`with start_run(...) as run:` mlflow.start_run in the configured experiment (created
    with its artifacts in .segen/); a server that stops answering, in the block too, raises
    ServerUnavailable."""
    import mlflow

    with server_errors():
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # set by configure_tracking
        name = os.environ.get(_EXPERIMENT_ENV, "segen")
        if mlflow.get_experiment_by_name(name) is None:
            _create_experiment(project, name)
        mlflow.set_experiment(name)
        active = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name,
                                  tags=redacted(tags))  # no credentials in tags
        try:
            yield active
        except BaseException as err:
            if server_down(err):
                _forget_run(active.info.run_id)
            active.__exit__(type(err), err, err.__traceback__)  # FAILED, unless forgotten
            raise
        active.__exit__(None, None, None)  # FINISHED


def _forget_run(run_id: str) -> None:
    """Drop the run from this thread's active runs without telling the server: ending it
    there would wait through all the retries again for a server already known to be gone
    (the run stays RUNNING in the store). MLflow has no public call for this; if its
    internals change, the run is ended the ordinary way."""
    try:
        from mlflow.tracking.fluent import _active_run_stack
        stack = _active_run_stack.get()
    except (ImportError, AttributeError):
        return
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()


def _create_experiment(project: Project, name: str) -> None:
    """Create the experiment; a stage running beside this one may have just created it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):  # a server picks its own store
        location = project.mlflow_artifacts.as_uri()
    try:
        mlflow.create_experiment(name, artifact_location=location)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS" and \
                mlflow.get_experiment_by_name(name) is None:
            raise


def client() -> Any:
    """An MlflowClient on the store configure_tracking chose (not mlflow's global URI), whose
    calls raise ServerUnavailable once a server stops answering."""
    from mlflow.tracking import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    return _AnsweringClient(MlflowClient(tracking_uri=uri, registry_uri=uri))


class _AnsweringClient:
    """MlflowClient's methods, each under server_errors() (MLflow's client has retried)."""

    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        return functools.wraps(attr)(server_errors()(attr))


def git_revision(path: Path) -> str:
    """The commit checked out at path, with '-dirty' when tracked files differ; 'unknown'
    outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        rev = git("rev-parse", "HEAD")
        return rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def code_root() -> Path:
    """The checkout segen's own code runs from."""
    return Path(__file__).resolve().parent.parent
