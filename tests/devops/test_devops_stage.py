"""task.json files against the official schema and the input contract; staging; pinned constraints."""
from __future__ import annotations

import json
import re
import struct
import tomllib
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from devops_agent import REPO, TASK_NAMES
from fakes.endpoint_proxy import expand, render
from support import SPECS

TASKS = REPO / "tasks"
IDS = {"AmlPublishPipeline": "6cae206a-044f-4a05-9c4b-d2ba5e472ac9",
       "AmlRunPipeline": "32c5c089-770c-4fbe-b35f-b435cddb58b2",
       "AmlDeployAci": "cde006dd-709f-4826-8a97-09d7faf68b34",
       "AmlSmokeTest": "1a596f22-30bc-4a3e-a0e8-7bf939ff9470",
       "AmlDeployOnlineEndpoint": "9a338287-a4fa-4fca-8d1e-bd2ef26e34bd"}
WORKSPACE = ["target", "azureSubscription", "resourceGroup", "workspaceName", "localWorkspace"]
WORKSPACE_TASKS = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci",  # AmlSmokeTest calls a URI, no workspace
                   "AmlDeployOnlineEndpoint")
CONTRACT = {  # docs/task-inputs-contract.md
    "AmlPublishPipeline": (["pipelineFile", "pipelineName", "pipelineVersion", "publishEndpoint"],
                           ["pipelineId", "pipelineName", "pipelineVersion"]),
    "AmlRunPipeline": (["pipelineName", "pipelineVersion", "parameters", "experimentName", "timeoutMinutes",
                        "wait", "runId", "runEvaluation", "evaluationMetric", "metricDirection", "minImprovement",
                        "modelName", "modelOutput", "metricsOutput"],
                       ["runId", "runStatus", "metrics", "modelName", "modelVersion", "modelRegistered"]),
    "AmlDeployAci": (["modelName", "modelVersion", "deploymentName", "cpuCores", "memoryGb", "authEnabled",
                      "dnsNameLabel", "location", "scoringFolder", "entryScript", "forceRedeploy"],
                     ["deploymentName", "scoringUri", "scoringKey"]),
    "AmlSmokeTest": (["scoringUri", "scoringKey", "requestFile", "expectedValues", "tolerance", "requestCount",
                      "latencyBudgetMs", "readinessTimeoutSeconds"],
                     ["smokeTestPassed", "latencyP50Ms", "latencyP95Ms", "latencyP99Ms"]),
    "AmlDeployOnlineEndpoint": (["modelName", "modelVersion", "endpointName", "deploymentName", "authMode",
                                 "instanceType", "instanceCount", "scoringFolder", "entryScript", "requestFile",
                                 "expectedValues", "trafficSteps", "mirrorPercent", "deletePrevious", "smokeRequests",
                                 "readinessTimeoutSeconds"],
                                ["scoringUri", "deploymentName", "previousDeployment", "scoringKey"]),
}


def task_json(name: str) -> dict:
    return json.loads((TASKS / name / "task.json").read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_json_is_valid_against_the_official_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SPECS / "azure-devops" / "task.schema.json").read_text(encoding="utf-8-sig"))
    jsonschema.Draft4Validator(schema).validate(task_json(name))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_identity_and_handlers(name: str) -> None:
    task = task_json(name)
    assert task["id"] == IDS[name] and task["name"] == name
    assert len(task["friendlyName"]) <= 40
    assert {"Node20_1", "Node24"} <= set(task["execution"])
    assert all(handler["target"] == "launcher.js" for handler in task["execution"].values())
    assert f"docs/tasks/{name}.md" in task["helpMarkDown"] and (REPO / "docs" / "tasks" / f"{name}.md").is_file()
    for key in ("description", "category", "author", "version", "minimumAgentVersion", "instanceNameFormat",
                "groups"):
        assert task[key]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_inputs_and_outputs_follow_the_contract(name: str) -> None:
    task = task_json(name)
    inputs, outputs = CONTRACT[name]
    common = (WORKSPACE if name in WORKSPACE_TASKS else []) + ["pythonPath"]
    assert sorted(i["name"] for i in task["inputs"]) == sorted(common + inputs)
    assert [o["name"] for o in task["outputVariables"]] == outputs
    by_name = {i["name"]: i for i in task["inputs"]}
    groups = {g["name"] for g in task["groups"]}
    assert all(i.get("groupName", "workspace") in groups for i in task["inputs"])
    if name not in WORKSPACE_TASKS:
        assert "dataSourceBindings" not in task and "workspace" not in groups
        return
    assert by_name["target"]["options"].keys() == {"azure", "local"} and by_name["target"]["defaultValue"] == "azure"
    assert by_name["azureSubscription"]["type"] == "connectedService:AzureRM"
    assert by_name["azureSubscription"]["visibleRule"] == "target = azure"
    assert by_name["localWorkspace"]["defaultValue"] == "$(Agent.TempDirectory)/amlops-workspace"


def _arm_paths() -> tuple[list[re.Pattern], str]:
    """The ARM routes of the 2024-10-01 spec, and the name of its lists' continuation parameter."""
    root = SPECS / "azure" / "rest-api-specs" / "specification" / "machinelearningservices"
    patterns, pagination = [], set()
    for spec in root.rglob("stable/2024-10-01/*.json"):
        document = json.loads(spec.read_text(encoding="utf-8-sig"))
        for path in document.get("paths", {}):
            patterns.append(re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$", re.I))
        if "PaginationParameter" in document.get("parameters", {}):
            pagination.add(document["parameters"]["PaginationParameter"]["name"])
    assert len(pagination) == 1, pagination
    return patterns, pagination.pop()


@pytest.mark.parametrize("name", WORKSPACE_TASKS)
def test_data_source_bindings_target_inputs_and_real_arm_routes(name: str) -> None:
    task = task_json(name)
    inputs = {i["name"] for i in task["inputs"]}
    routes, continuation = _arm_paths()
    targets = set()
    for binding in task["dataSourceBindings"]:
        assert binding["target"] in inputs and binding["endpointId"] == "$(azureSubscription)"
        targets.add(binding["target"])
        if "endpointUrl" in binding:
            # the first call's URL as the endpoint proxy renders it (the later calls: tests/devops/test_task_json.py)
            context = {"endpoint": {"url": "https://management.azure.com/", "subscriptionId": "sub"},
                       **json.loads(render(binding["initialContextTemplate"], {}))}
            url = urlsplit(render(expand(binding["endpointUrl"], {n: "x" for n in inputs}), context))
            assert url.netloc == "management.azure.com" and any(route.match(url.path) for route in routes), url
            assert dict(parse_qsl(url.query, keep_blank_values=True)) == {continuation: "", "api-version": "2024-10-01"}
    assert {"resourceGroup", "workspaceName"} <= targets


@pytest.mark.parametrize("name", TASK_NAMES)
def test_icon_is_a_32_pixel_png(name: str) -> None:
    data = (TASKS / name / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (32, 32)


def test_stage_task_lays_out_what_the_agent_runs(tmp_path: Path, wheel: Path) -> None:
    from amlops.packaging.stage import stage_task

    folder = stage_task("AmlSmokeTest", tmp_path, wheel)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["task.json", "icon.png", "launcher.js", "constraints.txt", wheel.name])
    assert re.fullmatch(r"amlops-\d+\.\d+\.\d+-py3-none-any\.whl", wheel.name)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (TASKS / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_constraints_pin_every_runtime_dependency() -> None:
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + project["optional-dependencies"]["local"] + \
        project["optional-dependencies"]["azure"]
    pins = _pins()
    missing = [r for r in direct if _canonical(Requirement(r).name) not in pins]
    assert not missing, f"add to tasks/constraints.txt (regenerate it): {missing}"
    for requirement in map(Requirement, direct):
        assert requirement.specifier.contains(pins[_canonical(requirement.name)], prereleases=True), requirement


def test_constraints_are_closed_under_dependencies_where_the_pin_is_installed() -> None:
    from packaging.requirements import Requirement

    pins = _pins()
    checked, missing = 0, []
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            if _canonical(requirement.name) not in pins:
                missing.append(f"{name} needs {requirement.name}")
    assert checked >= 10 and not missing, missing
