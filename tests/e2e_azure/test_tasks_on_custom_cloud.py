"""End to end with `target: azure`: the four staged tasks, run by the real node and launcher as one agent job,
each fed the previous task's output variables through `$(step.variable)` macros, against the fakes of Azure
Resource Manager (Azure ML and Container Instances, spec-checked), Azure ML's data plane, Entra ID and Azurite.

The tasks reach them only through what a user sets on a real agent: an AzureRM service connection for a custom
cloud (environment AzureStack, its Resource Manager URL; the sign-in endpoint is discovered from the cloud's
metadata as Azure's own tasks do), a client secret, `https_proxy` (the proxy tunnels the cloud's host names to
the local servers), `REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE` for the test CA, and `http_proxy`, through which the
container group's address reaches its local stand-in (the inference container's command fetching the package with
a token of the group's identity, an upstream, the real Caddy with the gateway configuration of the PUT body), as
in tests/aci. The workspace's key vault (tests/aci/fake_keyvault.py) is reached at its name in the cloud.

Test-side choices: the fake job goes Running -> Completed (one poll interval of the task's 10 s, not five); a
model version created from a job output stores the output's datastore path (StackAzureML); the upstream behind
Caddy is tests/aci/fake_inference.py. No /etc/hosts entry is needed: the proxy resolves the cloud's names.
"""
from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import aml_fake
from aci_support import IDENTITY_CLIENT_ID, IDENTITY_PRINCIPAL_ID, StandIn, require
from aml_fake import FakeAzureML
from azurite import Azurite, azurite_available, make_certificate
from devops_agent import Agent, Connection, TaskRun
from fake_arm import FakeArm, Script, Step, container_state
from fake_keyvault import FakeKeyVault
from stack_cloud import ARM_HOST, DOMAIN, LOGIN_HOST, RESOURCE_MANAGER, STORAGE_AUDIENCE, STORAGE_SUFFIX, \
    ConnectProxy, FakeEntra, FrontDoor

pytestmark = pytest.mark.slow

SUBSCRIPTION = "6c2a1b3e-0000-4d5e-9f00-00000000a2b1"
RESOURCE_GROUP = "rg-mlops-stack"
WORKSPACE = "mlw-stack"
ACCOUNT = "amlopsstore"
ACCOUNT_KEY = base64.b64encode(b"amlops-stack-storage-key-32byte!").decode()
TENANT = "3f6b7a51-9c3d-4c1e-8d4f-0b1c2d3e4f50"
CLIENT = "8a1f2e3d-4c5b-4a69-9788-1a2b3c4d5e6f"
LOCATION = "westeurope"
VAULT_HOST = f"kv-{WORKSPACE}.vault.{DOMAIN}"
VAULT_AUDIENCE = f"https://vault.{DOMAIN}"
TRAINING_DATA = "azureml://datastores/workspaceblobstore/paths/data/porto_seguro_sample.csv"
METRICS = {"auc": 0.7412, "accuracy": 0.9631}


class StackAzureML(FakeAzureML):
    """The Azure ML fake with this cloud's host names (its workspace's discovery URL is in the cloud's domain)."""

    def _seed(self) -> None:
        self.data_host = f"{self.location}.api.{DOMAIN}"
        self.arm_host = ARM_HOST
        super()._seed()


class StackArm(FakeArm):
    """The Container Instances fake answering on the cloud's Resource Manager (its own listener stays unused)."""

    @property
    def base_url(self) -> str:
        return RESOURCE_MANAGER


class Blobs:
    """The fake service's side of the workspace storage account (account key), through the cloud's proxy."""

    def __init__(self):
        from azure.storage.blob import BlobServiceClient

        self.service = BlobServiceClient(f"https://{ACCOUNT}.blob.{STORAGE_SUFFIX}",
                                         credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})

    def create_container(self, name: str) -> None:
        self.service.create_container(name)

    def write(self, container: str, path: str, content: bytes) -> None:
        self.service.get_blob_client(container, path).upload_blob(content, overwrite=True)


def group_script(stand: StandIn) -> Script:
    """The host creating the group: the containers start, then the group is running (the stand-in starts)."""
    waiting = container_state("Waiting", detail="ContainerCreating")
    started = {"count": 1, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
               "name": "Started", "message": "Started container", "type": "Normal"}
    return Script([
        Step("Creating", "Pending", {"inference": container_state("Running"), "gateway": waiting}),
        Step("Succeeded", "Running", {"inference": container_state("Running"), "gateway": container_state("Running")},
             [started]),
    ], on_running=stand.run, on_deleted=stand.stop)


@dataclass
class Cloud:
    entra: FakeEntra
    aml: StackAzureML
    aci: StackArm
    vault: FakeKeyVault
    door: FrontDoor
    proxy: ConnectProxy
    stand: StandIn
    certificate: Path
    client_secret: str

    def connection(self) -> Connection:
        """The AzureRM service connection as the agent exports it for an Azure Stack / custom cloud environment."""
        return Connection("ServicePrincipal",
                          {"tenantid": TENANT, "serviceprincipalid": CLIENT, "authenticationType": "spnKey",
                           "serviceprincipalkey": self.client_secret},
                          data={"subscriptionId": SUBSCRIPTION, "subscriptionName": "amlops-stack",
                                "environment": "AzureStack", "scopeLevel": "Subscription"},
                          url=RESOURCE_MANAGER)

    def agent_settings(self) -> dict[str, str]:
        """What the agent's administrator sets for this network: the proxies and the trusted CA."""
        return {"https_proxy": self.proxy.url, "HTTPS_PROXY": self.proxy.url, "http_proxy": self.stand.proxy,
                "HTTP_PROXY": self.stand.proxy, "REQUESTS_CA_BUNDLE": str(self.certificate),
                "SSL_CERT_FILE": str(self.certificate)}


@pytest.fixture
def cloud(tmp_path, monkeypatch, prepared_tools):
    pytest.importorskip("azure.ai.ml")
    require(shutil.which("caddy"), "caddy (apt-get install caddy)")
    require("azurite" if azurite_available() is None else None, "Azurite (npm ci --prefix tests/azure)")
    folder = tmp_path / "cloud"
    folder.mkdir()
    names = [ARM_HOST, LOGIN_HOST, f"{LOCATION}.api.{DOMAIN}", f"{ACCOUNT}.blob.{STORAGE_SUFFIX}", VAULT_HOST]
    certificate, private_key = make_certificate(folder, names)
    (folder / "azurite").mkdir()
    storage = Azurite(folder / "azurite", {ACCOUNT: ACCOUNT_KEY})
    storage.cert, storage.key = certificate, private_key  # the cloud's certificate, not its own
    storage.start()
    identity = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{WORKSPACE}-aci")
    stand = StandIn(folder / "stand-in", certificate,
                    identities={identity.lower(): (IDENTITY_CLIENT_ID, IDENTITY_PRINCIPAL_ID)})
    stand.root.mkdir()
    entra = FakeEntra(TENANT, CLIENT, "spn-" + secrets.token_urlsafe(24))
    aci = StackArm(certificate, private_key, resource_group=RESOURCE_GROUP, subscription=SUBSCRIPTION, tenant=TENANT)
    aci.script_for = lambda name, body: group_script(stand)
    pipeline_oid = str(uuid.uuid5(uuid.NAMESPACE_OID, CLIENT))  # FakeEntra's oid of the service principal
    vault = FakeKeyVault(certificate, private_key, TENANT, {pipeline_oid}, VAULT_HOST, VAULT_AUDIENCE).start()
    door = proxy = None
    try:
        aml = StackAzureML(subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, workspace=WORKSPACE,
                           storage_account=ACCOUNT, storage_key=ACCOUNT_KEY, storage_suffix=STORAGE_SUFFIX,
                           location=LOCATION, container=f"azureml-blobstore-{uuid.uuid4().hex[:12]}")
        aci.add_resource(aml.registry_id, {"loginServer": f"acr{WORKSPACE.replace('-', '')}.azurecr.{DOMAIN}"})
        aci.add_resource(aml.key_vault_id, {"vaultUri": f"https://{VAULT_HOST}/", "enableRbacAuthorization": True})
        aci.add_resource(identity, {"clientId": IDENTITY_CLIENT_ID, "principalId": IDENTITY_PRINCIPAL_ID,
                                    "tenantId": TENANT})
        door = FrontDoor(certificate, private_key, entra, aml, aci, LOCATION).start()
        own_hosts = {ARM_HOST, LOGIN_HOST, aml.data_host}
        proxy = ConnectProxy(lambda host: door.port if host in own_hosts else vault.port if host == VAULT_HOST else
                             storage.port if host.endswith(f".blob.{STORAGE_SUFFIX}") else None).start()
        made = Cloud(entra, aml, aci, vault, door, proxy, stand, certificate, entra.client_secret)
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "AZUREML_CURRENT_CLOUD",
                     "AZURE_CLOUD", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in made.agent_settings().items():  # the stand-in's init command runs with them too
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(urllib.request, "_opener", None)
        aml.storage = Blobs()
        aml.storage.create_container(aml.container)
        aml.job_plan = "running-then-completed"
        monkeypatch.setitem(aml_fake.PLANS, "running-then-completed",  # one poll interval, not five
                            [("Running", {0: "Running"}), ("Completed", {0: "Completed", 1: "Completed"})])
        aml.job_outputs = {"model": {"model.txt": b"tree 0\nleaf 0.25\n"},
                           "metrics": {"metrics.json": json.dumps(METRICS).encode()}}
        yield made
    finally:
        stand.close()
        vault.stop()
        for server in (door, proxy):
            if server is not None:
                server.stop()
        aci.server.server_close()
        storage.stop()


def _secret_free(runs: dict[str, TaskRun], secret: str) -> list[str]:
    """Where `secret` shows in what the agent logs or in raw output lines other than the ones handing it over."""
    found = []
    for step, run in runs.items():
        if secret in run.text() or secret in run.stderr or any(secret in s for s in run.summaries):
            found.append(f"{step}: shown in the log")
        found += [f"{step}: {line[:80]}" for line in run.leaks(secret)]
    return found


def test_four_tasks_on_a_custom_cloud(cloud: Cloud, prepared_tools, sources, tmp_path, staged_tasks) -> None:
    agent = Agent(work=tmp_path, tools=prepared_tools, sources=sources)
    connection = cloud.connection()
    target = {"target": "azure", "azureSubscription": connection.id, "resourceGroup": RESOURCE_GROUP,
              "workspaceName": WORKSPACE}
    deployment = f"driver-{uuid.uuid4().hex[:6]}"
    steps = [
        ("publish", "AmlPublishPipeline", {}),
        ("run", "AmlRunPipeline", {"pipelineName": "$(publish.pipelineName)",
                                   "pipelineVersion": "$(publish.pipelineVersion)",
                                   "parameters": f"training_data={TRAINING_DATA}", "experimentName": "ci-stack"}),
        ("deploy", "AmlDeployAci", {"modelName": "$(run.modelName)", "modelVersion": "$(run.modelVersion)",
                                    "deploymentName": deployment}),
        ("smoke", "AmlSmokeTest", {"scoringUri": "$(deploy.scoringUri)", "scoringKey": "$(deploy.scoringKey)",
                                   "requestCount": "10", "readinessTimeoutSeconds": "30"}),
    ]
    runs: dict[str, TaskRun] = {}
    timings: dict[str, float] = {}
    for step, task, inputs in steps:
        started = time.perf_counter()
        workspace = target if task != "AmlSmokeTest" else {}  # the smoke test calls a URI: no workspace inputs
        run = runs[step] = agent.run(staged_tasks[task], {**workspace, **inputs}, step=step, connections=[connection],
                                     extra=cloud.agent_settings(), timeout=300)
        timings[step] = time.perf_counter() - started
        assert run.exit_code == 0 and run.result == "Succeeded", \
            f"{step} ended {run.result}: {run.message}\n{run.text()}\n{run.stderr}\n" \
            f"refused by the proxy: {cloud.proxy.refused}\nby the cloud: {cloud.door.refused}\n" \
            f"spec problems: {cloud.aml.problems} {cloud.aci.invalid_bodies}\nstand-in: {cloud.stand.errors}"
        assert run.summaries, step
    print("task seconds:", {step: round(seconds, 1) for step, seconds in timings.items()})
    publish, train, deploy, smoke = (runs[s] for s in ("publish", "run", "deploy", "smoke"))

    # the output variables chain from task to task
    assert (publish.outputs["pipelineName"], publish.outputs["pipelineVersion"]) == ("safe_driver_training", "4711")
    job_put = cloud.aml.calls("PUT", "/jobs/")[-1].body["properties"]
    assert job_put["componentId"] == publish.outputs["pipelineId"]
    assert job_put["inputs"]["training_data"] == {"uri": TRAINING_DATA, "jobInputType": "uri_file"}
    assert job_put["experimentName"] == "ci-stack" and job_put["tags"]["build_id"] == "4711"
    assert train.outputs["runStatus"] == "Completed" and train.outputs["modelRegistered"] == "true"
    assert json.loads(train.outputs["metrics"]) == METRICS
    run_id = train.outputs["runId"]
    assert cloud.aml.calls("PUT", f"/jobs/{run_id}")
    assert (train.outputs["modelName"], train.outputs["modelVersion"]) == ("safe-driver-model", "1")
    model_put = cloud.aml.calls("PUT", "/models/safe-driver-model/versions/1")[0].body["properties"]
    assert model_put["modelUri"] == f"azureml://jobs/{run_id}/outputs/model" and model_put["tags"]["run_id"] == run_id
    [group] = cloud.aci.puts()
    tags = group["tags"]
    assert (tags["amlops-model"], tags["amlops-model-version"], tags["amlops-run-id"]) == \
        ("safe-driver-model", "1", run_id)
    assert tags["amlops-build-id"] == "4711" and tags["amlops-workspace"] == WORKSPACE
    fqdn = cloud.aci.fqdn(deployment, "ResourceGroupReuse", LOCATION)
    assert deploy.outputs["deploymentName"] == deployment
    assert deploy.outputs["scoringUri"] == f"http://{fqdn}/score"
    assert smoke.outputs["smokeTestPassed"] == "true"
    assert cloud.stand.errors == [] and "amlops-fetch: unpacked" in cloud.stand.logs()
    # the package was read with a token of the group's identity, asked for when the container started
    assert [r["client_id"] for r in cloud.stand.endpoint.requests] == [IDENTITY_CLIENT_ID]
    # the registered folder, nested as Azure ML nests it under AZUREML_MODEL_DIR (score.py searches below it)
    assert (cloud.stand.app_root / "azureml-models" / "safe-driver-model" / "1" / "model" / "model.txt").is_file()

    # the smoke test reports latency (its requests went through the gateway to the stand-in's upstream)
    latency = {name: float(smoke.outputs[f"latency{name}Ms"]) for name in ("P50", "P95", "P99")}
    assert 0 < latency["P50"] <= latency["P95"] <= latency["P99"]
    assert "p95" in smoke.summaries[0] and "10 requests" in smoke.message

    # the scoring key is a secret: masked first, handed over as a secret output, never shown
    key = deploy.outputs["scoringKey"]
    assert len(key) >= 32 and key in deploy.secrets and key in smoke.secrets
    assert any(line.startswith("##vso[task.setvariable variable=scoringKey;") and "issecret=true" in line
               for line in deploy.stdout.splitlines())
    assert _secret_free(runs, key) == []
    assert _secret_free(runs, cloud.client_secret) == [], "the service principal's secret leaked"
    assert all(cloud.client_secret in run.secrets for run in runs.values())
    assert key not in cloud.stand.logs(), "the key reached the gateway's or the upstream's log"
    # the key is kept in the workspace's key vault (and in the gateway's secret volume), nowhere else
    assert cloud.vault.secrets[f"amlops-{deployment}-scoring-key"]["value"] == key
    assert not [step for step, run in runs.items() if ACCOUNT_KEY in run.stdout or ACCOUNT_KEY in run.stderr], \
        "the storage key azure-ai-ml reads with listSecrets leaked"

    # every request reached the fakes through the connection's cloud, signed in, and spec-valid
    assert cloud.door.metadata_reads >= 3, "the tasks that open the workspace discover the sign-in endpoint"
    assert cloud.proxy.refused == [] and cloud.door.refused == [] and cloud.entra.refused == []
    assert {target.rsplit(":", 1)[0] for target in cloud.proxy.tunnels} == {
        ARM_HOST, LOGIN_HOST, cloud.aml.data_host, f"{ACCOUNT}.blob.{STORAGE_SUFFIX}", VAULT_HOST}
    # Resource Manager; storage (the deployment package); the key vault (the scoring key); Azure ML, whose token
    # azure-ai-ml sends along with a pipeline job (x-ms-user-aml-token), for the cloud's aml_resource_id
    assert {issued.audience for issued in cloud.entra.issued} == {
        RESOURCE_MANAGER.rstrip("/"), STORAGE_AUDIENCE, VAULT_AUDIENCE, "https://ml.azure.com"}
    assert {issued.client_id for issued in cloud.entra.issued} == {CLIENT}
    assert cloud.aml.problems == [] and cloud.aml.unhandled == [] and cloud.aml.answer_problems == []
    assert cloud.aci.invalid_bodies == [] and cloud.aci.unhandled == []
    validated = [r.path for r in cloud.aml.requests if r.host == ARM_HOST and r.method == "PUT"]
    for kind in ("/codes/", "/components/", "/jobs/", "/models/"):
        assert any(kind in path for path in validated), f"no {kind} PUT was checked against the spec"
