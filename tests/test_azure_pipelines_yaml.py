"""The sample pipelines are valid against the official Azure Pipelines YAML schema, extended with
entries generated from our own task.json files, so a misspelled input of our tasks fails here."""
import copy
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from support import REPO, SPECS

SCHEMA = SPECS / "azure-devops" / "pipelines-yaml.schema.json"
PIPELINES = [REPO / "azure-pipelines.yml", REPO / "azure-pipelines-extension.yml"]
MACRO = r"(\$\(.+\)|\$\[.+\]|\$\{\{.+\}\})"
STEP_OUTPUT = re.compile(r"\$\(([a-z]\w*)\.(\w+)\)")


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


@lru_cache(maxsize=None)
def validator() -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(read_json(SCHEMA))
    extra = [task_entry(read_json(path)) for path in task_files()] + [COVERAGE_V2]
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


def steps(document: dict) -> list[dict]:
    found = list(document.get("steps", []))
    for stage in document.get("stages", []):
        for job in stage.get("jobs", []):
            found.extend(job.get("steps", []))
    return found


def test_our_four_tasks_have_task_json():
    assert [p.parent.name for p in task_files()] == ["AmlDeployAci", "AmlDeployOnlineEndpoint", "AmlPublishPipeline",
                                                     "AmlRunPipeline", "AmlSmokeTest"]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_yaml_is_valid_against_the_schema(path: Path):
    assert errors(yaml.safe_load(path.read_text())) == []


def test_a_misspelled_input_of_our_task_fails():
    document = yaml.safe_load(PIPELINES[0].read_text())
    run = next(s for s in steps(document) if s.get("task") == "AmlRunPipeline@0")
    run["inputs"]["modelNmae"] = run["inputs"].pop("modelName")
    assert any("modelNmae" in error for error in errors(document))


def test_a_bad_pick_list_value_fails():
    document = yaml.safe_load(PIPELINES[0].read_text())
    run = next(s for s in steps(document) if s.get("task") == "AmlRunPipeline@0")
    run["inputs"]["metricDirection"] = "sideways"
    assert errors(document)


def test_every_step_output_reference_names_an_earlier_step_and_its_output_variable():
    document = yaml.safe_load(PIPELINES[0].read_text())
    outputs: dict[str, set[str]] = {}
    by_task = {f"{t['name']}@{t['version']['Major']}": t for t in map(read_json, task_files())}
    checked = 0
    for step in steps(document):
        for step_name, variable in STEP_OUTPUT.findall(json.dumps(step.get("inputs", {}))):
            assert variable in outputs.get(step_name, set()), f"$({step_name}.{variable}) is not defined earlier"
            checked += 1
        if step.get("task") in by_task and step.get("name"):
            outputs[step["name"]] = {o["name"] for o in by_task[step["task"]].get("outputVariables", [])}
    assert checked >= 6


def test_pull_requests_run_only_the_lint_and_test_stage():
    document = yaml.safe_load(PIPELINES[0].read_text())
    first, second = document["stages"]
    assert "condition" not in first
    assert "ne(variables['Build.Reason'], 'PullRequest')" in second["condition"]
    assert "refs/heads/main" in second["condition"]
    publishing = [s for s in first["jobs"][0]["steps"] if s.get("task", "").startswith("Publish")]
    assert len(publishing) == 2 and all(s["condition"] == "succeededOrFailed()" for s in publishing)


def test_the_service_connection_is_named_once():
    text = PIPELINES[0].read_text()
    assert text.count("amlops-azure") == 1
