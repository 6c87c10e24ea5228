"""`--output json` on every list/show command prints records with stable field names."""
import json

import pytest
from click.testing import CliRunner

from amlops import api
from amlops.cli import main

RUN_FIELDS = {"id", "pipeline_name", "pipeline_version", "experiment", "status", "created_at", "ended_at",
              "parameters", "tags", "metrics", "outputs", "error", "steps"}
STEP_FIELDS = {"name", "status", "started_at", "ended_at", "reused_from", "log_path"}
MODEL_FIELDS = {"name", "version", "type", "path", "run_id", "created_at", "tags", "properties"}


@pytest.fixture
def finished_run(workspace, mini_project):
    api.publish(workspace, mini_project / "pipeline.yml")
    return api.submit(workspace, "mini-pipeline")


def cli(workspace, *args: str):
    result = CliRunner().invoke(main, [*args, "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_runs_list_and_show_as_json(workspace, finished_run):
    listed = json.loads(cli(workspace, "runs", "list", "--output", "json"))
    assert [run["id"] for run in listed] == [finished_run.id]
    assert RUN_FIELDS <= set(listed[0])
    shown = json.loads(cli(workspace, "runs", "show", finished_run.id, "-o", "json"))
    assert shown["status"] == "Completed" and shown["pipeline_name"] == "mini_pipeline"
    assert [step["name"] for step in shown["steps"]] == ["make", "score"]
    assert set(shown["steps"][0]) == STEP_FIELDS
    assert shown["metrics"] == finished_run.metrics


def test_models_list_and_show_as_json_and_table(workspace, finished_run):
    cli(workspace, "models", "register", "mini", "--run", finished_run.id)
    listed = json.loads(cli(workspace, "models", "list", "--output", "json"))
    assert set(listed[0]) == MODEL_FIELDS
    assert (listed[0]["name"], listed[0]["version"], listed[0]["type"]) == ("mini", 1, "custom_model")
    shown = json.loads(cli(workspace, "models", "show", "mini:1", "--output", "json"))
    assert shown["run_id"] == finished_run.id
    table = cli(workspace, "models", "show", "mini")
    assert ["version", "1"] in [line.split() for line in table.splitlines()]


def test_deployments_list_as_json_is_a_list(workspace):
    assert json.loads(cli(workspace, "deployments", "list", "--output", "json")) == []
    assert cli(workspace, "deployments", "list").strip() == "no deployments"


def test_an_unknown_output_format_is_refused(workspace):
    result = CliRunner().invoke(main, ["runs", "list", "--output", "yaml", "--workspace", str(workspace.root)])
    assert result.exit_code == 2 and "'yaml' is not one of 'table', 'json'" in result.output
