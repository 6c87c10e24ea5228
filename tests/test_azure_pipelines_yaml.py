"""The sample pipelines are valid against the official Azure Pipelines YAML schema, extended with
entries generated from our own task.json files, so a misspelled input of our tasks fails here; every task step
gives the inputs its task requires once visibleRules are evaluated; and the sample's stage and step conditions
run what they should for a pull request, a push to main and a gate that registered nothing."""
import copy
import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from amlops.devops.inputs import visible
from pipeline_conditions import Context, evaluate
from sample_pipeline import SAMPLE, job_steps, jobs, stage, steps
from support import REPO, SPECS

SCHEMA = SPECS / "azure-devops" / "pipelines-yaml.schema.json"
PIPELINES = [SAMPLE, REPO / "azure-pipelines-extension.yml"]
MACRO = r"(\$\(.+\)|\$\[.+\]|\$\{\{.+\}\})"
STEP_OUTPUT = re.compile(r"\$\(([a-z]\w*)\.(\w+)\)")
STAGE_OUTPUT = re.compile(r"stageDependencies\.(\w+)\.(\w+)\.outputs\['(\w+)\.(\w+)'\]")


def task_files() -> list[Path]:
    return sorted(REPO.glob("tasks/*/task.json"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def input_schema(task_input: dict) -> dict:
    """What the agent accepts for one input: booleans also as 'true'/'false' strings, and any
    input as a $(macro) or ${{ expression }}."""
    kind = task_input["type"]
    if kind == "boolean":
        return {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": rf"(?i)^(true|false|{MACRO})$"}]}
    options = list(task_input.get("options", {}))
    editable = str(task_input.get("properties", {}).get("EditableOptions", "")).lower() == "true"
    if kind == "pickList" and options and not editable:
        return {"anyOf": [{"enum": options}, {"type": "string", "pattern": rf"^{MACRO}$"}]}
    return {"type": ["string", "number", "boolean"]}


def task_entry(task: dict) -> dict:
    properties = {}
    for task_input in task["inputs"]:
        for name in [task_input["name"], *task_input.get("aliases", [])]:
            properties[name] = input_schema(task_input)
    required = [i["name"] for i in task["inputs"]
                if i.get("required") and not i.get("visibleRule") and i.get("defaultValue") in (None, "")]
    return {
        "properties": {
            "task": {"pattern": f"^{task['name']}@{task['version']['Major']}$"},
            "inputs": {"type": "object", "properties": properties, "additionalProperties": False,
                       "required": required},
        },
        "firstProperty": ["task"], "required": ["task"] + (["inputs"] if required else []),
    }


# PublishCodeCoverageResults@2 is newer than the schema (v1.261.1); its inputs per the task's docs.
COVERAGE_V2 = {
    "properties": {
        "task": {"pattern": "^PublishCodeCoverageResults@2$"},
        "inputs": {"type": "object", "additionalProperties": False, "required": ["summaryFileLocation"],
                   "properties": {"summaryFileLocation": {"type": "string"}, "pathToSources": {"type": "string"},
                                  "failIfCoverageEmpty": {"type": "boolean"}}},
    },
    "firstProperty": ["task"], "required": ["task", "inputs"],
}

# Microsoft's Azure Machine Learning extension's agentless wait task (docs/setup.md, section 9), inputs as in
# https://learn.microsoft.com/azure/machine-learning/how-to-devops-machine-learning ("Wait for the job").
AZUREML_JOB_WAIT = {
    "properties": {
        "task": {"pattern": "^AzureMLJobWaitTask@1$"},
        "inputs": {"type": "object", "additionalProperties": False,
                   "required": ["serviceConnection", "resourceGroupName", "azureMLWorkspaceName", "azureMLJobName"],
                   "properties": {name: {"type": "string"} for name in (
                       "serviceConnection", "resourceGroupName", "azureMLWorkspaceName", "azureMLJobName")}},
    },
    "firstProperty": ["task"], "required": ["task", "inputs"],
}


@lru_cache(maxsize=None)
def validator() -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(read_json(SCHEMA))
    extra = [task_entry(read_json(path)) for path in task_files()] + [COVERAGE_V2, AZUREML_JOB_WAIT]
    task = schema["definitions"]["task"]
    task["anyOf"].extend(extra)
    task["properties"]["task"]["anyOf"].extend(
        {"enum": [entry["properties"]["task"]["pattern"].strip("^$")]} for entry in extra)
    return jsonschema.Draft7Validator(schema)


def errors(document: dict) -> list[str]:
    """Every leaf error of the failing branches (empty when the document is valid)."""
    leaves: list[str] = []

    def walk(error: jsonschema.ValidationError) -> None:
        if not error.context:
            leaves.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}")
        for child in error.context:
            walk(child)

    for error in validator().iter_errors(document):
        walk(error)
    return sorted(set(leaves))


def sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


def tasks_by_reference() -> dict[str, dict]:
    return {f"{t['name']}@{t['version']['Major']}": t for t in map(read_json, task_files())}


def missing_required_inputs(step: dict, task: dict) -> list[str]:
    """The required inputs a step leaves empty, among those its own values make visible (as the agent decides:
    a visibleRule reads the step's value or the input's default; a $(macro) value counts as given)."""
    given = {name: str(value) for name, value in (step.get("inputs") or {}).items()}
    for task_input in task["inputs"]:  # a step may use an alias
        for alias in task_input.get("aliases", []):
            if alias in given:
                given[task_input["name"]] = given.pop(alias)
    raw = {i["name"]: given.get(i["name"], str(i.get("defaultValue", ""))) for i in task["inputs"]}
    return [i["name"] for i in task["inputs"]
            if i.get("required") and visible(i.get("visibleRule", ""), raw) and not raw[i["name"]].strip()]


def test_our_four_tasks_have_task_json():
    assert [p.parent.name for p in task_files()] == ["AmlDeployAci", "AmlDeployOnlineEndpoint", "AmlPublishPipeline",
                                                     "AmlRunPipeline", "AmlSmokeTest"]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_yaml_is_valid_against_the_schema(path: Path):
    assert errors(yaml.safe_load(path.read_text())) == []


def test_a_misspelled_input_of_our_task_fails():
    document = sample()
    run = next(s for s in steps(document) if s.get("task") == "AmlRunPipeline@0")
    run["inputs"]["modelNmae"] = run["inputs"].pop("modelName")
    assert any("modelNmae" in error for error in errors(document))


def test_a_bad_pick_list_value_fails():
    document = sample()
    run = next(s for s in steps(document) if s.get("task") == "AmlRunPipeline@0")
    run["inputs"]["metricDirection"] = "sideways"
    assert errors(document)


def test_every_step_output_reference_names_an_earlier_step_of_its_job_and_its_output_variable():
    checked = 0
    by_task = tasks_by_reference()
    for job in jobs(sample()):
        outputs: dict[str, set[str]] = {}
        for step in job_steps(job):
            for step_name, variable in STEP_OUTPUT.findall(json.dumps(step.get("inputs", {}))):
                assert variable in outputs.get(step_name, set()), f"$({step_name}.{variable}) is not defined earlier"
                checked += 1
            if step.get("task") in by_task and step.get("name"):
                outputs[step["name"]] = {o["name"] for o in by_task[step["task"]].get("outputVariables", [])}
    assert checked >= 6


def test_every_output_taken_from_an_earlier_stage_names_its_stage_job_step_and_variable():
    document, by_task = sample(), tasks_by_reference()
    taken = 0
    for job in jobs(document):
        for value in (job.get("variables") or {}).values():
            for stage_name, job_name, step_name, variable in STAGE_OUTPUT.findall(value):
                source = next(j for j in stage(document, stage_name)["jobs"] if j.get("job") == job_name)
                step = next(s for s in job_steps(source) if s.get("name") == step_name)
                assert variable in {o["name"] for o in by_task[step["task"]]["outputVariables"]}
                taken += 1
    assert taken == 4  # model name and version, for QA and for production


def test_every_task_step_gives_the_inputs_its_task_requires():
    by_task, checked = tasks_by_reference(), 0
    for path in PIPELINES:
        for step in steps(yaml.safe_load(path.read_text())):
            if step.get("task") in by_task:
                assert missing_required_inputs(step, by_task[step["task"]]) == [], f"{path.name}: {step['task']}"
                checked += 1
    assert checked >= 6


def test_the_agentless_wait_example_in_the_setup_guide_is_valid_and_complete():
    text = (REPO / "docs" / "setup.md").read_text()
    block = re.search(r"## 9\..*?```yaml\n(.*?)```", text, re.S).group(1)
    document = yaml.safe_load("stages:\n" + block)
    assert errors(document) == []
    by_task = tasks_by_reference()
    ours = [s for s in steps(document) if s.get("task") in by_task]
    assert [s["task"] for s in ours] == ["AmlPublishPipeline@0", "AmlRunPipeline@0", "AmlRunPipeline@0"]
    assert all(missing_required_inputs(s, by_task[s["task"]]) == [] for s in ours)
    submit, gate = ours[1:]
    assert submit["inputs"]["wait"] is False and "runId" in gate["inputs"]
    (train,) = [j for j in jobs(document) if j.get("job") == "Train"]
    assert gate in job_steps(train) and gate["name"] == "train"  # what the deployment stages read


def test_the_example_on_the_marketplace_page_is_valid_complete_and_deploys_only_a_new_model():
    text = (REPO / "extension" / "overview.md").read_text()
    document = yaml.safe_load(re.search(r"## Example\s+```yaml\n(.*?)```", text, re.S).group(1))
    assert errors(document) == []
    by_task = tasks_by_reference()
    ours = [s for s in steps(document) if s.get("task") in by_task]
    assert len(ours) == 5 and all(missing_required_inputs(s, by_task[s["task"]]) == [] for s in ours)
    for registered, expected in (("true", True), ("false", False), (None, False)):
        context = Context({} if registered is None else {"train.modelRegistered": registered})
        assert [runs(s.get("condition"), context) for s in ours[2:]] == [expected] * 3  # QA, smoke, production


def test_a_required_input_made_visible_by_the_default_target_must_be_given():
    """What shipped once: AmlSmokeTest defaulted to target azure and so required a connection the sample omitted."""
    by_task = tasks_by_reference()
    run = next(s for s in steps(sample()) if s.get("task") == "AmlRunPipeline@0")
    del run["inputs"]["azureSubscription"]
    assert missing_required_inputs(run, by_task["AmlRunPipeline@0"]) == ["azureSubscription"]
    run["inputs"]["target"] = "local"
    assert missing_required_inputs(run, by_task["AmlRunPipeline@0"]) == []
    del run["inputs"]["pipelineName"]
    assert missing_required_inputs(run, by_task["AmlRunPipeline@0"]) == ["pipelineName"]
    smoke = next(s for s in steps(sample()) if s.get("task") == "AmlSmokeTest@0")
    del smoke["inputs"]["scoringUri"]
    assert missing_required_inputs(smoke, by_task["AmlSmokeTest@0"]) == ["scoringUri"]


def runs(condition: str | None, context: Context) -> bool:
    return bool(evaluate(condition or "succeeded()", context))


def main_push() -> dict[str, str]:
    return {"Build.SourceBranch": "refs/heads/main", "Build.Reason": "IndividualCI"}


def pull_request() -> dict[str, str]:
    return {"Build.SourceBranch": "refs/pull/7/merge", "Build.Reason": "PullRequest"}


def test_pull_requests_run_lint_and_the_fast_tests_and_main_the_full_suite():
    document = sample()
    test_steps = job_steps(stage(document, "LintAndUnitTests")["jobs"][0])
    for variables, selection in ((pull_request(), '-m "not slow"'), (main_push(), None)):
        ran = [s["script"] for s in test_steps if "pytest" in s.get("script", "")
               and runs(s.get("condition"), Context(variables))]
        assert len(ran) == 1
        assert (selection in ran[0]) if selection else ("-m" not in ran[0].split())
        assert runs(stage(document, "Train").get("condition"), Context(variables)) == (variables == main_push())
    assert "condition" not in stage(document, "LintAndUnitTests")
    publishing = [s for s in test_steps if s.get("task", "").startswith("Publish")]
    assert len(publishing) == 2 and all(s["condition"] == "succeededOrFailed()" for s in publishing)


def test_the_test_results_glob_takes_the_junit_files_only():
    document = sample()
    test_steps = job_steps(stage(document, "LintAndUnitTests")["jobs"][0])
    glob = next(s for s in test_steps if s.get("task") == "PublishTestResults@2")["inputs"]["testResultsFiles"]
    written = re.findall(r"test-results/[\w.*-]+\.xml", json.dumps([s.get("script", "") for s in test_steps]))
    junit = {w for w in written if "junit" in w}
    coverage = next(s for s in test_steps if s.get("task") == "PublishCodeCoverageResults@2")
    assert junit == {"test-results/junit-flake8.xml", "test-results/junit-pytest.xml"}
    assert all(fnmatch.fnmatch(name, glob) for name in junit)
    assert not fnmatch.fnmatch(coverage["inputs"]["summaryFileLocation"], glob)


def deploy_stage_runs(registered: str | None) -> bool:
    document = sample()
    outputs = {} if registered is None else {"Train.train.modelRegistered": registered}
    context = Context(main_push(), {"Train": {"result": "Succeeded", "outputs": outputs}})
    return runs(stage(document, "DeployQA").get("condition"), context)


def test_the_qa_deployment_is_skipped_when_the_gate_registered_nothing():
    assert deploy_stage_runs("true") and deploy_stage_runs("True")  # the agent writes booleans either way
    assert not deploy_stage_runs("false")
    assert not deploy_stage_runs(None)  # wait: false, or an earlier failure: nothing registered
    qa = stage(sample(), "DeployQA")
    assert qa["dependsOn"] == "Train"
    failed = Context(main_push(), {"Train": {"result": "Failed", "outputs": {"Train.train.modelRegistered": "true"}}},
                     previous="Failed")
    assert not runs(qa.get("condition"), failed)


def test_the_condition_reads_the_gates_output_where_the_train_step_writes_it():
    condition = stage(sample(), "DeployQA")["condition"]
    stage_name, reference = re.search(r"dependencies\.(\w+)\.outputs\['([\w.]+)'\]", condition).groups()
    job_name, step_name, variable = reference.split(".")
    job = next(j for j in stage(sample(), stage_name)["jobs"] if j.get("job") == job_name)
    step = next(s for s in job_steps(job) if s.get("name") == step_name)
    assert step["task"] == "AmlRunPipeline@0"
    assert variable in {o["name"] for o in tasks_by_reference()[step["task"]]["outputVariables"]}


def test_deployments_are_deployment_jobs_bound_to_their_environments():
    document = sample()
    qa, production = stage(document, "DeployQA"), stage(document, "DeployProduction")
    environments = []
    # QA on ACI, production on a managed online endpoint (blue/green), each smoke-tested after its deploy
    for deploy_stage, deploy_task in ((qa, "AmlDeployAci@0"), (production, "AmlDeployOnlineEndpoint@0")):
        (job,) = deploy_stage["jobs"]
        assert "deployment" in job and "job" not in job
        environments.append(job["environment"])
        tasks = [s.get("task") for s in job_steps(job)]
        assert tasks.index(deploy_task) < tasks.index("AmlSmokeTest@0")
        assert job_steps(job)[0] == {"checkout": "self"}
    assert environments == ["amlops-qa", "amlops-production"]
    assert "DeployQA" in production["dependsOn"]
    # production follows QA: it runs only when QA ran and passed, so it is skipped with it
    for qa_result, expected in (("Succeeded", True), ("Skipped", False), ("Failed", False)):
        context = Context(main_push(), previous=qa_result)
        assert runs(production.get("condition"), context) is expected
    assert all(s.get("task") != "AmlDeployAci@0" for s in job_steps(stage(document, "Train")["jobs"][0]))


def test_the_condition_evaluator_follows_the_documented_rules():
    context = Context({"Build.Reason": "PullRequest"})
    assert evaluate("eq(variables['build.reason'], 'pullrequest')", context) is True
    assert evaluate("ne(variables['Missing'], '')", context) is False
    assert evaluate("and(true, or(false, not(false)))", context) is True
    assert evaluate("in(variables['Build.Reason'], 'Manual', 'PullRequest')", context) is True
    assert evaluate("eq('it''s', 'IT''S')", context) is True
    with pytest.raises(ValueError, match="not known"):
        evaluate("contains(variables['Build.Reason'], 'Pull')", context)


def test_the_service_connection_is_named_once():
    text = PIPELINES[0].read_text()
    assert text.count("amlops-azure") == 1
