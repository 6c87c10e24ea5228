"""The task editor's pick lists: every task.json `dataSourceBindings` entry with an endpointUrl, evaluated the way
Azure DevOps' endpoint proxy does (tests/fakes/endpoint_proxy.py) over real HTTP on loopback against the Azure ML
fake, which pages its lists by a few items with the spec's `$skip` continuation token."""
from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from aml_fake import PAGE_PARAMETER, FakeAzureML, spec_for
from azure_support import KEY, RESOURCE_GROUP, STORAGE_ACCOUNT, SUBSCRIPTION, WORKSPACE, TokenMinter
from fakes.endpoint_proxy import MAX_CALLS, EndpointError, evaluate
from support import REPO

MODEL_VERSION_API = "2024-10-01"


def bindings(target: str) -> list[tuple[str, dict]]:
    """(task, binding) of every task whose `target` input is filled from an ARM list."""
    found = []
    for path in sorted((REPO / "tasks").glob("*/task.json")):
        for binding in json.loads(path.read_text(encoding="utf-8-sig")).get("dataSourceBindings", []):
            if binding["target"] == target and "endpointUrl" in binding:
                found.append((path.parent.name, binding))
    return found


def binding_ids(found: list[tuple[str, dict]]) -> list[str]:
    return [task for task, _ in found]


def bare_fake(page_size: int = 2) -> FakeAzureML:
    """The ARM side of the fake only (no storage account behind it): enough for what the pickers list."""
    return FakeAzureML(subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, workspace=WORKSPACE,
                       storage_account=STORAGE_ACCOUNT, storage_key=KEY, storage_suffix="localhost",
                       page_size=page_size)


@pytest.fixture
def arm() -> Iterator[FakeAzureML]:
    fake = bare_fake()
    yield fake
    assert not fake.answer_problems, fake.answer_problems
    assert not fake.problems, fake.problems


def pick(fake: FakeAzureML, binding: dict, **inputs: str):
    token = TokenMinter().get_token("https://management.azure.com/.default").token
    with fake.serve_http() as url:
        return evaluate(binding, endpoint={"url": url, "subscriptionId": SUBSCRIPTION},
                        inputs={"resourceGroup": RESOURCE_GROUP, "workspaceName": WORKSPACE, **inputs}, token=token)


def put(fake: FakeAzureML, path: str, body: dict, api_version: str = MODEL_VERSION_API):
    return fake.handle("PUT", f"https://{fake.arm_host}{path}?api-version={api_version}",
                       {"Authorization": "Bearer t"}, json.dumps(body).encode())


def add_model_version(fake: FakeAzureML, name: str, version: str) -> None:
    answer = put(fake, f"{fake.prefix}/models/{name}/versions/{version}",
                 {"properties": {"modelUri": f"azureml://datastores/workspaceblobstore/paths/{name}/{version}/",
                                 "modelType": "custom_model"}})
    assert answer.status == 201, answer.body


# --- the fake's paging, as the spec names it --------------------------------------------------------------------


def test_azure_ml_lists_take_the_continuation_token_in_skip():
    """The parameter the fake pages with is the one the 2024-10-01 spec gives every list the pickers call."""
    spec = spec_for("2024-10-01")
    prefix = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/" \
             "Microsoft.MachineLearningServices/workspaces"
    for path in (prefix, f"{prefix}/{WORKSPACE}/components", f"{prefix}/{WORKSPACE}/models",
                 f"{prefix}/{WORKSPACE}/models/m/versions"):
        operation = spec.operation("GET", path)
        tokens = [p["name"] for p in operation.parameters
                  if p.get("description") == "Continuation token for pagination."]
        assert tokens == [PAGE_PARAMETER], (operation.id, tokens)


def test_a_continuation_token_the_service_did_not_issue_is_refused(arm):
    for name in ("ws-b", "ws-c"):
        arm.add_workspace(name)
    path = arm.prefix.rsplit("/", 1)[0]
    first = arm.handle("GET", f"https://{arm.arm_host}{path}?api-version=2024-10-01", {"Authorization": "Bearer t"},
                       None)
    assert [w["name"] for w in first.body["value"]] == ["mlw-amlops", "ws-b"] and "%24skip=" in first.body["nextLink"]
    second = arm.handle("GET", first.body["nextLink"], {"Authorization": "Bearer t"}, None)
    assert [w["name"] for w in second.body["value"]] == ["ws-c"] and "nextLink" not in second.body
    forged = arm.handle("GET", f"https://{arm.arm_host}{path}?api-version=2024-10-01&$skip=2",
                        {"Authorization": "Bearer t"}, None)
    assert forged.status == 400 and "continuation token" in forged.body["error"]["message"]


def test_a_container_put_sets_what_a_client_may_and_keeps_what_the_server_owns(arm):
    """ComponentContainers_CreateOrUpdate: tags, description, properties and isArchived are the client's (a PUT
    replaces them); latestVersion and nextVersion are the server's, refused in a request and kept."""
    container = f"{arm.prefix}/components/train"
    body = {"properties": {"componentSpec": {"name": "train", "version": "3", "type": "command", "command": "echo"}}}
    assert put(arm, f"{container}/versions/3", body).status == 201
    tagged = put(arm, container, {"properties": {"description": "the training step", "tags": {"team": "ml"}}})
    assert tagged.status == 200
    assert tagged.body["properties"]["latestVersion"] == "3" and tagged.body["properties"]["tags"] == {"team": "ml"}
    replaced = put(arm, container, {"properties": {"tags": {"amlops_kind": "pipeline"}}})
    assert replaced.body["properties"]["tags"] == {"amlops_kind": "pipeline"}
    assert "description" not in replaced.body["properties"] and replaced.body["properties"]["nextVersion"] == "4"
    refused = put(arm, container, {"properties": {"latestVersion": "9", "tags": {}}})
    assert refused.status == 400 and "latestVersion" in refused.body["error"]["message"]
    arm.problems.clear()  # the refused request is recorded there on purpose
    assert put(arm, f"{arm.prefix}/components/empty", {"properties": {"tags": {}}}).status == 201


# --- the pickers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "binding"), bindings("workspaceName"), ids=binding_ids(bindings("workspaceName")))
def test_the_workspace_picker_lists_every_workspace_across_pages(arm, task, binding):
    for name in ("mlw-dev", "mlw-prod", "mlw-test", "zz-last"):
        arm.add_workspace(name)
    listed = pick(arm, binding)
    assert listed.names == ["mlw-amlops", "mlw-dev", "mlw-prod", "mlw-test", "zz-last"]
    assert listed.values[0] == {"Value": "mlw-amlops", "DisplayValue": "mlw-amlops"}
    assert len(listed.urls) == 3 and "$skip=&" in listed.urls[0]  # the first call: an empty token
    tokens = [call.query.get(PAGE_PARAMETER) for call in arm.calls("GET")]
    assert tokens[0] == "" and all(tokens[1:]) and len(set(tokens)) == 3  # each call sent the token it was given


def add_models(fake: FakeAzureML) -> None:
    for name in ("churn", "fraud", "safe-driver"):
        add_model_version(fake, name, "1")
    for version in range(2, 6):
        add_model_version(fake, "safe-driver", str(version))


@pytest.mark.parametrize(("task", "binding"), bindings("modelName"), ids=binding_ids(bindings("modelName")))
def test_the_model_name_pickers_list_every_model(arm, task, binding):
    add_models(arm)
    listed = pick(arm, binding)
    assert sorted(listed.names) == ["churn", "fraud", "safe-driver"] and len(listed.urls) == 2


@pytest.mark.parametrize(("task", "binding"), bindings("modelVersion"), ids=binding_ids(bindings("modelVersion")))
def test_the_model_version_pickers_list_every_version_of_the_chosen_model(arm, task, binding):
    add_models(arm)
    listed = pick(arm, binding, modelName="safe-driver")
    assert sorted(listed.names) == ["1", "2", "3", "4", "5"] and len(listed.urls) == 3
    assert pick(arm, binding, modelName="fraud").names == ["1"]


def test_the_callbacks_stop_at_the_services_limit_of_calls(arm):
    """A list longer than MAX_CALLS pages shows its first pages only: the proxy's throttling, not an endless loop."""
    arm.page_size = 1
    for index in range(8):
        arm.add_workspace(f"ws-{index}")
    _, binding = bindings("workspaceName")[0]
    listed = pick(arm, binding)
    assert len(listed.urls) == MAX_CALLS and listed.names == ["mlw-amlops", "ws-0", "ws-1", "ws-2", "ws-3"]


def test_a_binding_that_reads_the_wrong_token_lists_the_first_page_again(arm):
    """The check can fail: a binding that extracts another parameter than the spec's `$skip` from nextLink sends
    an empty token each time and gets the first page again until the proxy stops."""
    for name in ("ws-b", "ws-c"):
        arm.add_workspace(name)
    _, binding = bindings("workspaceName")[0]
    broken = copy.deepcopy(binding)
    broken["callbackContextTemplate"] = broken["callbackContextTemplate"].replace("%24skip", "%24skipToken")
    listed = pick(arm, broken)
    assert len(listed.urls) == MAX_CALLS and listed.names == ["mlw-amlops", "ws-b"] * MAX_CALLS


def test_a_resource_group_that_does_not_exist_is_the_services_error(arm):
    _, binding = bindings("workspaceName")[0]
    with pytest.raises(EndpointError, match="Status Code: 404.*ResourceGroupNotFound"):
        pick(arm, binding, resourceGroup="rg-other")


def test_the_fake_answers_over_http_only_with_a_bearer_token(arm):
    with arm.serve_http() as url:
        request = urllib.request.Request(f"{url}subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                                         "Microsoft.MachineLearningServices/workspaces?api-version=2024-10-01")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert refused.value.code == 401


# --- the pipeline picker: published pipelines only --------------------------------------------------------------


@pytest.mark.parametrize(("task", "binding"), bindings("pipelineName"), ids=binding_ids(bindings("pipelineName")))
def test_the_pipeline_picker_lists_published_pipelines_not_command_components(azure_ws, fake, training_project,
                                                                              task, binding):
    from azure.ai.ml.entities import CommandComponent

    published = azure_ws.publish_pipeline(training_project / "pipeline.yml", version="1")
    azure_ws.ml_client.components.create_or_update(CommandComponent(
        name="plain_command", version="1", command="echo hello",
        environment="azureml://registries/azureml/environments/sklearn-1.5/versions/1"))
    containers = [c.name for c in azure_ws.ml_client.components.list()]
    assert len(containers) > fake.page_size and "plain_command" in containers  # steps, the pipeline, plain_command
    listed = pick(fake, binding)
    assert listed.names == [published.name] and len(listed.urls) > 1
    tagged = [call for call in fake.calls("PUT") if call.path.endswith(f"/components/{published.name}")]
    assert [call.body["properties"]["tags"] for call in tagged] == [{"amlops_kind": "pipeline"}]


def test_publishing_again_keeps_the_containers_tags_and_adds_the_kind_once(azure_ws, fake, training_project):
    """A PUT replaces a container's tags: what is there stays; a pipeline already tagged is not written again."""
    azure_ws.publish_pipeline(training_project / "pipeline.yml", version="1")
    container = f"{fake.prefix}/components/safe_driver_training"
    fake.resources[container.lower()]["properties"]["tags"] = {"owner": "ml-team"}
    fake.resources[container.lower()]["properties"]["description"] = "the training pipeline"
    azure_ws.publish_pipeline(training_project / "pipeline.yml", version="2")
    properties = fake.resources[container.lower()]["properties"]
    assert properties["tags"] == {"owner": "ml-team", "amlops_kind": "pipeline"}
    assert properties["description"] == "the training pipeline" and properties["latestVersion"] == "2"
    puts = len(fake.calls("PUT", "/components/safe_driver_training"))
    azure_ws.publish_pipeline(training_project / "pipeline.yml", version="2")
    assert len(fake.calls("PUT", "/components/safe_driver_training")) == puts
