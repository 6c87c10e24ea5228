"""The Azure ML service's rules, as the fake enforces them: each test breaks one on purpose and gets the service's
answer (the fake cites where each rule and answer come from), then shows the flow keeping it."""
from __future__ import annotations

import copy
import json

import pytest

from amlops import api
from amlops.errors import AmlopsError
from template_seed import ROLE_ASSIGNMENT_TYPE, TEMPLATE
from test_azure_flow import DATA_URI, outputs, run_pipeline

READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader


def send(fake, method: str, path: str, body: dict | None = None, api_version: str = "2024-01-01-preview"):
    return fake.handle(method, f"https://{fake.arm_host}{path}?api-version={api_version}",
                       {"Authorization": "Bearer t"}, json.dumps(body).encode() if body is not None else None)


def template(change) -> dict:
    tpl = copy.deepcopy(json.loads(TEMPLATE.read_text(encoding="utf-8")))
    change(tpl)
    return tpl


def without_cluster_reader(tpl: dict) -> None:
    tpl["resources"] = [raw for raw in tpl["resources"] if not (
        raw["type"] == ROLE_ASSIGNMENT_TYPE and "reference(" in raw["properties"]["principalId"])]


def without_cluster_identity(tpl: dict) -> None:
    for raw in tpl["resources"]:
        if raw["type"].endswith("/computes"):
            raw.pop("identity")


def pipeline_job(fake, compute_id: str) -> dict:
    return {"properties": {"jobType": "Pipeline", "experimentName": "rules",
                           "settings": {"default_compute": compute_id},
                           "jobs": {"train": {"type": "command", "inputs": {}}}}}


def failed_step_logs(events: list) -> list[str]:
    return [text for kind, step, text in events if kind == "log" and step == "train"]


# --- computes -------------------------------------------------------------------------------------------------


def test_computes_are_the_templates_and_a_missing_one_is_404_with_no_body(fake):
    found = send(fake, "GET", f"{fake.prefix}/computes/cpu-cluster", api_version="2024-10-01")
    assert found.status == 200 and found.body["properties"]["computeType"] == "AmlCompute"
    assert found.body["identity"]["type"] == "SystemAssigned" and found.body["identity"]["principalId"]
    missing = send(fake, "GET", f"{fake.prefix}/computes/gpu-cluster", api_version="2024-10-01")
    assert (missing.status, missing.body) == (404, None)  # as recorded: no error JSON at all


def test_a_compute_id_with_the_azureml_prefix_is_refused_at_submit(fake):
    """What azure-ai-ml makes of `default_compute: azureml:cpu-cluster` when it is passed on as is."""
    answer = send(fake, "PUT", f"{fake.prefix}/jobs/prefixed",
                  pipeline_job(fake, f"{fake.prefix}/computes/azureml:cpu-cluster"))
    assert answer.status == 400 and answer.body["error"]["code"] == "UserError"
    assert "Invalid compute" in answer.body["error"]["message"]
    assert send(fake, "PUT", f"{fake.prefix}/jobs/plain", pipeline_job(fake, "cpu-cluster")).status == 400
    assert send(fake, "PUT", f"{fake.prefix}/jobs/armid",
                pipeline_job(fake, f"{fake.prefix}/computes/cpu-cluster")).status == 201


def test_a_job_on_a_compute_that_does_not_exist_is_accepted_and_fails_when_it_runs(fake):
    assert send(fake, "PUT", f"{fake.prefix}/jobs/lost", pipeline_job(fake, f"{fake.prefix}/computes/gone")).status \
        == 201
    for _ in range(20):
        job = send(fake, "GET", f"{fake.prefix}/jobs/lost").body
    assert job["properties"]["status"] == "Failed"


def test_the_flow_refuses_a_compute_that_does_not_exist_before_submitting(
        azure_ws, fake, training_project, training_data):
    pipeline = training_project / "pipeline.yml"
    pipeline.write_text(pipeline.read_text().replace("azureml:cpu-cluster", "azureml:gpu-cluster"))
    published = api.publish(azure_ws, pipeline, version="1")
    with pytest.raises(AmlopsError, match="^compute gpu-cluster does not exist in workspace mlw-amlops; create it"):
        run_pipeline(azure_ws, published.name, published.version)
    assert not fake.calls("PUT", "/jobs/")


# --- identity-based data access -------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [without_cluster_reader, without_cluster_identity])
def test_without_the_clusters_identity_and_role_the_run_fails_at_the_mount(
        azure_ws, fake, training_project, training_data, change):
    """The datastore has no credential and the job no identity: the cluster's managed identity reads the data, so
    the template must give the cluster an identity and that identity a blob data role on the account."""
    fake.deploy_template(template(change))
    fake.job_outputs = outputs()
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    events: list = []
    run = run_pipeline(azure_ws, published.name, published.version, events)

    assert run.status == "Failed" and "Failed nodes: /train" in run.error
    logs = failed_step_logs(events)
    assert logs[0].startswith(f"Failed to mount URI {DATA_URI}")
    assert "Error Code: ScriptExecution.StreamAccess.Authentication" in logs[0]
    assert not any("std_log.txt" in text for _, _, text in events), "the user's process never started"


def test_a_user_identity_on_a_job_that_runs_a_pipeline_component_is_ignored(
        azure_ws, fake, credential, training_project, training_data):
    """Why amlops relies on the cluster's identity: the service ignores an identity set on a pipeline job that
    runs a pipeline component, so even a submitter who may read the data (the pipeline principal with the
    template's Storage Blob Data Contributor) does not make the read work without the cluster's role."""
    from azure.ai.ml import Input, UserIdentityConfiguration
    from azure.ai.ml.entities import PipelineJob

    fake.deploy_template(template(without_cluster_reader), pipeline_principal=credential.object_id)
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    job = azure_ws.ml_client.jobs.create_or_update(PipelineJob(
        component=published.id, identity=UserIdentityConfiguration(), settings={"default_compute": "cpu-cluster"},
        inputs={"training_data": Input(type="uri_file", path=training_data)}, experiment_name="rules"))
    assert fake.calls("PUT", "/jobs/")[-1].body["properties"]["identity"] == {"identityType": "UserIdentity"}
    for _ in range(20):
        job = azure_ws.ml_client.jobs.get(job.name)
    assert job.status == "Failed"
    [train] = [child for child in azure_ws.ml_client.jobs.list(parent_job_name=job.name)
               if child.display_name == "train"]
    error = azure_ws.ml_client.jobs._runs_operations.get_run(train.name).error.error.message
    assert "ScriptExecution.StreamAccess.Authentication" in error


def test_the_templates_role_lets_the_clusters_identity_read_and_nothing_else_does(fake):
    cluster = fake.resources[f"{fake.prefix}/computes/cpu-cluster".lower()]["identity"]["principalId"]
    readers = [a for a in fake.deployment.role_assignments if a.role_definition_id == READER]
    assert [(a.principal_id, a.scope) for a in readers] == [
        (cluster, f"/subscriptions/{fake.subscription}/resourceGroups/{fake.resource_group}/providers/"
                  f"Microsoft.Storage/storageAccounts/{fake.storage_account}")]
    # no pipelinePrincipalObjectId: the template makes none of the pipeline principal's roles
    assert {a.principal_id for a in fake.deployment.role_assignments} == {cluster}
    fake.deploy_template(pipeline_principal="0a1b2c3d-0000-4000-8000-00000000abcd")
    assert len(fake.deployment.role_assignments) == 7  # + the ACI identity's two roles and Key Vault Secrets Officer


def test_a_key_based_datastore_needs_no_role(azure_ws, fake, training_project):
    fake.deploy_template(template(without_cluster_reader))
    fake.storage.write(fake.container, "data/porto.csv", b"id,target\n1,0\n")
    fake.job_outputs = outputs()
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    run = api.submit(azure_ws, published.name, version=published.version, timeout_s=60,
                     overrides={"training_data": "azureml://datastores/workspaceblobstore/paths/data/porto.csv"})
    assert run.status == "Completed", run.error


def test_a_training_file_that_is_not_there_fails_the_step(azure_ws, fake, training_project, training_data):
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    events: list = []
    run = api.submit(azure_ws, published.name, version=published.version, timeout_s=60, on_event=lambda *e:
                     events.append(e), overrides={"training_data": DATA_URI.replace("sample.csv", "missing.csv")})
    assert run.status == "Failed"
    assert "Error Code: ScriptExecution.StreamAccess.NotFound" in failed_step_logs(events)[0]


# --- run history: outputs and paths ---------------------------------------------------------------------------


def test_run_history_types_outputs_uri_folder_and_keeps_them_under_the_step(
        azure_ws, fake, training_project, training_data):
    fake.job_outputs = outputs()
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    run = run_pipeline(azure_ws, published.name, published.version)
    children = {child.display_name: child.name for child in azure_ws.ml_client.jobs.list(parent_job_name=run.id)}
    parent = azure_ws.ml_client.jobs._runs_operations.get_run_data(run.id).run_metadata.outputs
    assert {name: output.type for name, output in parent.items()} == {"model": "UriFolder", "metrics": "UriFolder"}
    assert fake.storage.exists(fake.container, f"azureml/{children['evaluate']}/metrics/metrics.json")
    assert fake.storage.exists(fake.container, f"azureml/{children['train']}/model/model.txt")
    assert not fake.storage.exists(fake.container, f"azureml/{run.id}/metrics/metrics.json")
    # a child job is not in the ARM API: jobs.get reads it from run history
    assert azure_ws.ml_client.jobs.get(children["train"]).display_name == "train"


# --- names ----------------------------------------------------------------------------------------------------


def test_a_batch_endpoint_name_another_workspace_of_the_region_holds_is_refused(azure_ws, fake):
    from azure.ai.ml.entities import BatchEndpoint

    fake.region_endpoint_names.add("safe-driver-training")
    with pytest.raises(Exception) as refused:
        azure_ws.ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="safe-driver-training")).result()
    assert "The specified endpoint name 'safe-driver-training' is not available. Endpoint names must be unique " \
           "within the region." in str(refused.value)
    assert send(fake, "PUT", f"{fake.prefix}/batchEndpoints/9lives", {"location": "westeurope", "properties": {
        "authMode": "AADToken"}}, api_version="2023-10-01").status == 400


def test_a_batch_deployment_on_a_prefixed_compute_is_refused(fake):
    assert send(fake, "PUT", f"{fake.prefix}/batchEndpoints/ep-rules", {"location": "westeurope", "properties": {
        "authMode": "AADToken"}}, api_version="2023-10-01").status == 201
    deployment = {"location": "westeurope", "properties": {"deploymentConfiguration": {
        "deploymentConfigurationType": "PipelineComponent", "settings": {"default_compute": "azureml:cpu-cluster"},
        "componentId": {"referenceType": "Id", "assetId": f"{fake.prefix}/components/p/versions/1"}}}}
    refused = send(fake, "PUT", f"{fake.prefix}/batchEndpoints/ep-rules/deployments/v1", deployment,
                   api_version="2023-10-01")
    assert refused.status == 400 and "azureml:cpu-cluster" in refused.body["error"]["message"]


# --- models from job outputs ----------------------------------------------------------------------------------


def test_a_model_from_a_job_output_with_nothing_there_is_refused(azure_ws, fake):
    with pytest.raises(AmlopsError, match="No blobs found in storage at model asset path: azureml/ghost/model/"):
        azure_ws.register_model("safe-driver", "azureml://jobs/ghost/outputs/model", {}, {}, "ghost")


def test_the_same_components_from_another_folder_are_the_same_version(azure_ws, fake, training_project, tmp_path):
    """Versions are immutable and compared by a content hash of relative paths only: a publish that stopped after
    registering the step components is finished from another agent's checkout of the same commit."""
    import shutil

    fake.fail_next("PUT", "/components/safe_driver_training/versions/1", status=400, code="UserError",
                   message="stopped on purpose")
    with pytest.raises(AmlopsError, match="stopped on purpose"):
        api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    assert fake.calls("PUT", "/components/train_safe_driver_model/versions/1")
    elsewhere = shutil.copytree(training_project, tmp_path / "agent2" / "s" / "training")
    published = api.publish(azure_ws, elsewhere / "pipeline.yml", version="1")
    assert published.component_ids["train"].endswith("/components/train_safe_driver_model/versions/1")


def test_a_pipeline_has_one_name_on_both_backends(azure_ws, training_project, tmp_path):
    """Azure ML keeps component names as `^[a-z][a-z0-9_]*$`; the local workspace names the pipeline the same, and
    both find it by either spelling."""
    local = api.open_workspace("local", local_path=tmp_path / "ws")
    on_azure = api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    here = api.publish(local, training_project / "pipeline.yml", version="1")
    assert here.name == on_azure.name == "safe_driver_training"
    assert local.get_pipeline("safe-driver-training").name == azure_ws.get_pipeline("safe-driver-training").name
