"""Input validation against the tasks' own task.json, with the environment the agent builds."""
from __future__ import annotations

from pathlib import Path

import pytest

from amlops.devops.inputs import TaskSpec, read_inputs, visible
from amlops.errors import AmlopsError

TASKS = Path(__file__).resolve().parents[2] / "tasks"


def spec(name: str) -> TaskSpec:
    return TaskSpec.load(TASKS / name)


def agent_env(tmp_path: Path, **inputs: str) -> dict[str, str]:
    env = {"BUILD_SOURCESDIRECTORY": str(tmp_path), "SYSTEM_DEFAULTWORKINGDIRECTORY": str(tmp_path),
           "AGENT_TEMPDIRECTORY": str(tmp_path / "_temp"), "BUILD_BUILDID": "77"}
    env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
    return env


def test_defaults_come_from_task_json_and_macros_are_expanded(tmp_path: Path) -> None:
    values = read_inputs(spec("AmlPublishPipeline"), agent_env(tmp_path, target="local"))
    assert values["pipelineFile"] == tmp_path / "training" / "pipeline.yml"
    assert values["pipelineVersion"] == "77"
    assert values["localWorkspace"] == f"{tmp_path / '_temp'}/amlops-workspace"
    assert values["publishEndpoint"] is False


@pytest.mark.parametrize("variable", ["ENDPOINT_AUTH_PARAMETER_C0NN_SERVICEPRINCIPALKEY", "SECRET_PASSWORD",
                                      "SYSTEM_ACCESSTOKEN", "AGENT_PROXYPASSWORD", "MY_VARIABLE"])
def test_a_reference_left_in_a_value_never_expands_to_a_secret(tmp_path: Path, variable: str) -> None:
    """A `$(X)` the agent left came from the author's text or a variable's value (a variable group entry set to
    `$(ENDPOINT_AUTH_PARAMETER_<id>_SERVICEPRINCIPALKEY)`): expanding it would put the secret in a job input."""
    env = agent_env(tmp_path, target="local", pipelineName="p", parameters=f"data_file=$({variable})")
    env[variable] = "s3cr3t-value"
    values = read_inputs(spec("AmlRunPipeline"), env)
    assert values["parameters"] == f"data_file=$({variable})"
    assert "s3cr3t-value" not in repr(dict(values)) + " ".join(values.warnings)


def test_missing_required_input_names_it(tmp_path: Path) -> None:
    with pytest.raises(AmlopsError, match=r"input 'scoringUri' \(Scoring URI\) is required"):
        read_inputs(spec("AmlSmokeTest"), agent_env(tmp_path, target="local"))


def test_azure_only_inputs_are_required_only_when_visible(tmp_path: Path) -> None:
    read_inputs(spec("AmlDeployAci"), agent_env(tmp_path, target="local", deploymentName="d"))
    with pytest.raises(AmlopsError) as error:
        read_inputs(spec("AmlDeployAci"), agent_env(tmp_path, target="azure", deploymentName="d"))
    for name in ("azureSubscription", "resourceGroup", "workspaceName"):
        assert f"input '{name}'" in str(error.value)


def test_the_smoke_test_needs_no_workspace(tmp_path: Path) -> None:
    """It only calls a scoring URI: no target, connection or workspace to ask for (the sample passes none)."""
    names = {i.name for i in spec("AmlSmokeTest").inputs}
    assert not names & {"target", "azureSubscription", "resourceGroup", "workspaceName", "localWorkspace"}
    assert read_inputs(spec("AmlSmokeTest"), agent_env(tmp_path, scoringUri="http://x"))["scoringUri"] == "http://x"


@pytest.mark.parametrize("given, canonical", [("local", "local"), ("LOCAL", "local"), ("Azure", "azure")])
def test_pick_lists_match_ignoring_case(tmp_path: Path, given: str, canonical: str) -> None:
    env = agent_env(tmp_path, target=given, deploymentName="d", azureSubscription="c", resourceGroup="g",
                    workspaceName="w")
    assert read_inputs(spec("AmlDeployAci"), env)["target"] == canonical


def test_bad_pick_list_value_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(AmlopsError, match=r"input 'target' must be one of azure, local; got 'cloud'"):
        read_inputs(spec("AmlDeployAci"), agent_env(tmp_path, target="cloud", deploymentName="d"))


@pytest.mark.parametrize("text, value", [("TRUE", True), ("False", False), ("true", True), ("", True)])
def test_booleans_ignore_case_and_default(tmp_path: Path, text: str, value: bool) -> None:
    env = agent_env(tmp_path, target="local", deploymentName="d", authEnabled=text)
    assert read_inputs(spec("AmlDeployAci"), env)["authEnabled"] is value


@pytest.mark.parametrize("name, text, message", [
    ("authEnabled", "yes", "must be true or false"),
    ("cpuCores", "two", "must be a number >= 0"),
    ("memoryGb", "-1", "must be a number >= 0"),
])
def test_typed_inputs_reject_bad_values(tmp_path: Path, name: str, text: str, message: str) -> None:
    env = agent_env(tmp_path, target="local", deploymentName="d", **{name: text})
    with pytest.raises(AmlopsError, match=f"input '{name}' {message}"):
        read_inputs(spec("AmlDeployAci"), env)


def test_int_inputs(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", scoringUri="u", requestCount="5", latencyBudgetMs="")
    values = read_inputs(spec("AmlSmokeTest"), env)
    assert values["requestCount"] == 5 and values["latencyBudgetMs"] is None
    with pytest.raises(AmlopsError, match="input 'requestCount' must be a whole number, got '5.5'"):
        read_inputs(spec("AmlSmokeTest"), agent_env(tmp_path, target="local", scoringUri="u", requestCount="5.5"))


def test_an_empty_required_file_path_arrives_as_the_repo_root_and_is_missing(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", pipelineFile=str(tmp_path) + "/")
    with pytest.raises(AmlopsError, match=r"input 'pipelineFile'.*required \(an empty file path arrives as the"):
        read_inputs(spec("AmlPublishPipeline"), env)


def test_an_empty_optional_file_path_falls_back_to_its_default(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", scoringUri="u", requestFile=str(tmp_path))
    values = read_inputs(spec("AmlSmokeTest"), env)
    assert values["requestFile"] == tmp_path / "training" / "scoring" / "sample-request.json"


def test_relative_file_paths_start_at_the_working_directory(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", pipelineFile="other/p.yml")
    assert read_inputs(spec("AmlPublishPipeline"), env)["pipelineFile"] == tmp_path / "other" / "p.yml"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", requestCount="many", tolerance="x")
    with pytest.raises(AmlopsError) as error:
        read_inputs(spec("AmlSmokeTest"), env)
    text = str(error.value)
    assert "scoringUri" in text and "requestCount" in text and "tolerance" in text and "\n" not in text


def test_undefined_macro_is_a_warning(tmp_path: Path) -> None:
    env = agent_env(tmp_path, target="local", pipelineName="$(Undefined.Thing)")
    env.pop("BUILD_BUILDID")
    values = read_inputs(spec("AmlPublishPipeline"), env)
    assert any("Undefined.Thing" in warning for warning in values.warnings)


@pytest.mark.parametrize("rule, expected", [
    ("target = azure", True), ("target = local", False), ("target != local", True),
    ("target = local || runEvaluation = true", True), ("target = azure && runEvaluation = false", False),
    ("", True),
])
def test_visible_rules(rule: str, expected: bool) -> None:
    assert visible(rule, {"target": "Azure", "runEvaluation": "true"}) is expected
