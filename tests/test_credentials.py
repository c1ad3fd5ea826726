"""No credentials in logs, MLflow params or tags: a URL's user:password@ and secret query
values are masked (segen.redact) wherever segen shows or records a URI."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import init_project, segen_cli

from segen.redact import redact, redacted
from segen.retry import Server, ServerUnavailable

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize("text, shown", [
    (f"http://segen:{SECRET}@127.0.0.1:5000/api", "http://***@127.0.0.1:5000/api"),
    (f"s3://bucket/x?token={SECRET}&region=eu", "s3://bucket/x?token=***&region=eu"),
    (f"the server at https://me:{SECRET}@host:1 failed", "the server at https://***@host:1 failed"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),  # nothing to mask
    ("/a/local/remote", "/a/local/remote"),
])
def test_redact_masks_credentials_in_urls(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_params_and_server_messages_are_redacted() -> None:
    params = {"data": {"remote": f"https://u:{SECRET}@dvc.example/r"}, "unet": {"lr": 0.1}}
    assert SECRET not in str(redacted(params)) and redacted(params)["unet"] == {"lr": 0.1}
    err = ServerUnavailable(Server("MLflow server", f"http://u:{SECRET}@127.0.0.1:1", "fix"),
                            5, 14.0, f"Max retries exceeded: http://u:{SECRET}@127.0.0.1:1/api")
    assert SECRET not in str(err) and "http://***@127.0.0.1:1" in str(err)


@pytest.mark.slow
def test_a_tracking_uri_with_credentials_is_in_no_param_tag_or_output(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from servers import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        secret_uri = uri.replace("http://", f"http://segen:{SECRET}@")  # ignored by the server
        root = init_project(tmp_path / "proj", {"mlflow": {"tracking_uri": secret_uri}})
        result = segen_cli("run", "--stages", "register_kmeans", cwd=root)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert SECRET not in result.stdout + result.stderr
        assert "***@127.0.0.1" in result.stdout  # the summary's "open <tracking URI>"
        registry = MlflowClient(tracking_uri=uri)
        runs = registry.search_runs([e.experiment_id for e in registry.search_experiments()])
        assert runs, "the run logged nothing"
        for run in runs:
            assert SECRET not in str(run.data.params) + str(run.data.tags), run.info.run_id
        for version in registry.search_model_versions("name='test-kmeans'"):
            assert SECRET not in str(version.tags)
