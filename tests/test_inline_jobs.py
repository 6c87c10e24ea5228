"""Inline command jobs (azureml-examples style) run locally, and steps log to the workspace's MLflow store."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from amlops import api
from amlops.cli import main
from amlops.errors import PipelineValidationError
from amlops.pipeline.loader import load_pipeline
from amlops.workspace.local.tracking import tracking_uri
from support import TESTS, edit


@pytest.fixture
def inline_project(tmp_path: Path) -> Path:
    """inline_project next to mini_project (mixed.yml uses its component) in one repository: a pipeline's
    files must be inside its repository."""
    (tmp_path / ".git").mkdir()
    shutil.copytree(TESTS / "inline_project", tmp_path / "inline_project")
    shutil.copytree(TESTS / "mini_project", tmp_path / "mini_project")
    return tmp_path / "inline_project"


@pytest.mark.slow  # its report step creates the workspace's MLflow store (seconds)
def test_an_inline_pipeline_runs_locally(workspace, inline_project):
    api.publish(workspace, inline_project / "pipeline.yml")
    run = api.submit(workspace, "inline-pipeline")
    assert run.status == "Completed", run.error
    assert [(s.name, s.status) for s in run.steps] == [("prep", "Completed"), ("report", "Completed")]
    assert (Path(run.outputs["summary"]) / "summary.txt").read_text() == "30.0"
    again = api.submit(workspace, "inline-pipeline")
    assert [s.reused_from for s in again.steps] == [run.id, run.id]


def test_a_mixed_pipeline_with_path_inputs_runs_locally(workspace, inline_project):
    api.publish(workspace, inline_project / "mixed.yml")
    run = api.submit(workspace, "mixed-pipeline")
    assert run.status == "Completed", run.error
    log = next(s.log_path for s in run.steps if s.name == "world").read_text()
    assert "world" in log and "model.txt" in log and " 0.5" in log


@pytest.mark.slow
def test_steps_log_to_the_workspace_mlflow_store(workspace, inline_project):
    from mlflow.tracking import MlflowClient

    api.publish(workspace, inline_project / "pipeline.yml")
    run = api.submit(workspace, "inline-pipeline")
    client = MlflowClient(tracking_uri(workspace.root))  # what `mlflow ui --backend-store-uri` opens
    experiment = client.get_experiment_by_name("inline")
    [logged] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`amlops.run_id` = '{run.id}'")
    assert logged.info.run_name == f"{run.id}_report" and logged.data.tags["amlops.step"] == "report"
    assert logged.data.metrics == {"scaled_total": 30.0} and logged.data.params == {"scale": "3"}
    assert logged.info.status == "FINISHED"
    artifact = Path(client.download_artifacts(logged.info.run_id, "report.txt", str(workspace.root / "dl")))
    assert artifact.read_text() == "scaled total 30.0\n"
    artifacts_root = workspace.root / "mlruns" / "artifacts"
    assert list(artifacts_root.rglob("report.txt")), "artifacts belong in the workspace's store"
    assert not list((workspace.root / "snapshots").rglob("mlruns")), "never in the snapshot"

    shown = CliRunner().invoke(main, ["runs", "show", run.id, "--workspace", str(workspace.root)])
    assert "mlflow report: scaled_total=30.0" in shown.stdout
    as_json = json.loads(CliRunner().invoke(main, ["runs", "show", run.id, "-o", "json", "--workspace",
                                                   str(workspace.root)]).stdout)
    assert as_json["mlflow_metrics"] == {"report": {"scaled_total": 30.0}}
    reused = api.submit(workspace, "inline-pipeline")
    shown = CliRunner().invoke(main, ["runs", "show", reused.id, "--workspace", str(workspace.root)])
    assert "mlflow report: scaled_total=30.0" in shown.stdout, "a reused step shows what its original run logged"


@pytest.mark.parametrize("old, new, message", [
    ("    environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest\n    compute: azureml:cpu-cluster\n",
     "", "job 'prep' has no 'environment'"),
    ("    code: ./src\n    command: >-", "    code: ./nope\n    command: >-",
     "code folder './nope' of job 'prep' not found"),
    ("--out ${{outputs.prepared}}", "--out ${{outputs.result}}", "declares no output 'result'"),
    ("      scale: 3\n", "      scale: 3\n      extra: ${{parent.inputs.missing}}\n",
     "refers to a pipeline input that does not exist"),
])
def test_inline_job_mistakes_are_clear(inline_project, old, new, message):
    edit(inline_project / "pipeline.yml", old, new)
    with pytest.raises(PipelineValidationError, match=message.replace("$", r"\$").replace("{", r"\{")):
        load_pipeline(inline_project / "pipeline.yml")
