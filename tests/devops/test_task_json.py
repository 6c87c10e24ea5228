"""task.json rules the editor and the endpoint proxy rely on, beyond the schema (checked in tests/packaging)."""
from __future__ import annotations

import json

import pytest

from devops_agent import REPO

# AmlSmokeTest calls a scoring URI only: it has no workspace inputs to bind.
WORKSPACE_TASKS = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci")


def task(name: str) -> dict:
    return json.loads((REPO / "tasks" / name / "task.json").read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize("name", WORKSPACE_TASKS)
def test_management_group_connections_are_not_offered(name: str) -> None:
    """Microsoft's Azure tasks filter AzureRM connections the same way; a management-group connection has no
    subscription, so the workspace could not be reached through it."""
    arm = [i for i in task(name)["inputs"] if i["type"] == "connectedService:AzureRM"]
    assert arm and all(i.get("properties", {}).get("EndpointFilterRule") == "ScopeLevel != ManagementGroup"
                       for i in arm)


@pytest.mark.parametrize("name", WORKSPACE_TASKS)
def test_every_bound_input_is_a_pick_list(name: str) -> None:
    """The editor fills only pickList inputs from a dataSourceBinding (a bound string input shows no list)."""
    definition = task(name)
    types = {i["name"]: i["type"] for i in definition["inputs"]}
    for binding in definition.get("dataSourceBindings", []):
        assert types[binding["target"]] == "pickList", binding["target"]


@pytest.mark.parametrize("name", WORKSPACE_TASKS)
def test_arm_lists_follow_next_link(name: str) -> None:
    """ARM list operations page with `nextLink`; each binding calls back with it until it is absent."""
    for binding in task(name).get("dataSourceBindings", []):
        if "endpointUrl" not in binding:
            continue  # a built-in data source (AzureResourceGroups) pages by itself
        assert binding["endpointUrl"].startswith("{{#if NextLink}}{{{NextLink}}}{{else}}{{{endpoint.url}}}")
        assert json.loads(binding["initialContextTemplate"]) == {"NextLink": ""}
        assert json.loads(binding["callbackContextTemplate"]) == {"NextLink": "{{{nextLink}}}"}
        assert binding["callbackRequiredTemplate"] == "{{#if nextLink}}true{{else}}false{{/if}}"
