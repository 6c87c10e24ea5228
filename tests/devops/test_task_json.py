"""task.json rules the editor and the endpoint proxy rely on, beyond the schema (checked in tests/packaging)."""
from __future__ import annotations

import json

import pytest

from devops_agent import REPO
from fakes.endpoint_proxy import expand, render

# AmlSmokeTest calls a scoring URI only: it has no workspace inputs to bind.
WORKSPACE_TASKS = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci", "AmlDeployOnlineEndpoint")


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


def arm_bindings() -> list[tuple[str, dict]]:
    """(task, binding) of every binding that calls ARM itself (a built-in data source such as AzureResourceGroups
    pages by itself)."""
    return [(path.parent.name, binding) for path in sorted((REPO / "tasks").glob("*/task.json"))
            for binding in task(path.parent.name).get("dataSourceBindings", []) if "endpointUrl" in binding]


ENDPOINT = {"url": "https://management.azure.com/", "subscriptionId": "00000000-1111-2222-3333-444444444444"}
INPUTS = {"resourceGroup": "rg", "workspaceName": "ws", "modelName": "model"}
NEXT_LINKS = {  # the token as ARM writes it in nextLink, either spelling of the parameter's name
    "b2Zmc2V0OjI%3D": "https://management.azure.com/subscriptions/s/x?api-version=2024-10-01&%24skip=b2Zmc2V0OjI%3D",
    "Zz0x": "https://management.azure.com/subscriptions/s/x?$skip=Zz0x&api-version=2024-10-01",
}


@pytest.mark.parametrize(("name", "binding"), arm_bindings(), ids=[f"{n}-{b['target']}" for n, b in arm_bindings()])
def test_arm_lists_call_back_with_the_continuation_token_of_next_link(name: str, binding: dict) -> None:
    """Azure DevOps renders the callback templates against the previous answer (`response`) and calls the endpointUrl
    again with what callbackContextTemplate gives (Microsoft's idiom; tests/fakes/endpoint_proxy.py): here the
    `$skip` token of nextLink (the spec's continuation parameter of Azure ML lists), unchanged, until nextLink is
    absent. tests/azure/test_task_pickers.py runs the same bindings over HTTP against the Azure ML fake."""
    url = expand(binding["endpointUrl"], INPUTS)
    first = render(url, {"endpoint": ENDPOINT, **json.loads(render(binding["initialContextTemplate"], {}))})
    assert first.startswith("https://management.azure.com/subscriptions/") and "?$skip=&api-version=" in first
    assert render(binding["callbackRequiredTemplate"], {"response": {"value": []}}) == "false"
    assert render(binding["callbackRequiredTemplate"], {"response": {"value": [], "nextLink": None}}) == "false"
    for token, next_link in NEXT_LINKS.items():
        answer = {"value": [], "nextLink": next_link}
        assert render(binding["callbackRequiredTemplate"], {"response": answer}) == "true"
        context = json.loads(render(binding["callbackContextTemplate"], {"response": answer}))
        assert render(url, {"endpoint": ENDPOINT, **context}) == first.replace("$skip=&", f"$skip={token}&")


def test_the_endpoint_proxy_model_refuses_what_it_does_not_model() -> None:
    """A binding that leans on a helper or syntax the model does not know fails here rather than pass untested."""
    from fakes.endpoint_proxy import TemplateError

    for template in ("{{#if x}}a{{/if}}", "{{lookup x y}}", "{{#getTokenValue x}}", "{{/getTokenValue}}"):
        with pytest.raises(TemplateError):
            render(template, {})
    with pytest.raises(TemplateError, match=r"\$\(resourceGroup\) has no value"):
        expand("rg=$(resourceGroup)", {"workspaceName": "ws"})
    assert render("{{a}}|{{{a}}}|{{missing}}", {"a": "<&>"}) == "&lt;&amp;&gt;|<&>|"
