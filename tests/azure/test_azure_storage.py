"""Training data and model files on Azure: `amlops datastore upload --backend azure` into Azurite (the real
blob protocol, bearer-token auth) with an identity-based datastore registered for it, and what the ACI
deployer builds on (location, default storage, model download, client kwargs)."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from amlops.cli import main
from azure_support import KEY, RESOURCE_GROUP, STORAGE_ACCOUNT, SUBSCRIPTION, TRAINING_ACCOUNT, WORKSPACE, Blobs

AZURE = ["--backend", "azure", "--subscription-id", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP,
         "--workspace-name", WORKSPACE]


@pytest.fixture
def cli_workspace(azure_ws, monkeypatch):
    """`--backend azure` opens our AzureWorkspace, wired to the fake and Azurite like `azure_ws`."""
    import amlops.workspace.azure.workspace as module

    def opened(subscription_id, resource_group, workspace_name, credential=None, cloud=None, **principal):
        assert (subscription_id, resource_group, workspace_name) == (SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
        assert not any(principal.values()), "no --tenant-id/--client-id given, so no service principal"
        return original(subscription_id, resource_group, workspace_name, azure_ws.credential, cloud=azure_ws.cloud,
                        transport=azure_ws.transport, client_kwargs=azure_ws.client_kwargs,
                        poll_interval_s=azure_ws.poll_interval_s)
    original = module.AzureWorkspace
    monkeypatch.setattr(module, "AzureWorkspace", lambda **kwargs: opened(**kwargs))
    return azure_ws


def test_datastore_upload_puts_the_file_in_blob_storage_and_registers_an_identity_based_datastore(
        cli_workspace, fake, storage, tmp_path):
    data = tmp_path / "porto.csv"
    data.write_text("id,target\n1,0\n2,1\n")
    result = CliRunner().invoke(main, ["datastore", "upload", "--file", str(data), "--path", "in/porto.csv", *AZURE])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "azureml://datastores/training_data/paths/in/porto.csv"
    assert Blobs(storage).read("trainingdata", "in/porto.csv") == data.read_bytes()
    body = fake.calls("PUT", "/datastores/training_data")[0].body["properties"]
    assert body["datastoreType"] == "AzureBlob" and body["credentials"] == {"credentialsType": "None"}
    assert (body["accountName"], body["containerName"], body["endpoint"], body["protocol"]) == \
        (STORAGE_ACCOUNT, "trainingdata", storage.suffix, "https")
    assert "https://storage.azure.com/.default" in cli_workspace.credential.scopes  # a bearer token, no key
    assert not fake.problems


def test_datastore_upload_to_another_account_and_container(cli_workspace, fake, storage, tmp_path):
    data = tmp_path / "porto.csv"
    data.write_text("id,target\n")
    result = CliRunner().invoke(main, ["datastore", "upload", "--file", str(data), "--datastore", "raw",
                                       "--container", "landing", "--storage-account", TRAINING_ACCOUNT, *AZURE])
    assert result.exit_code == 0, result.output
    assert Blobs(storage, TRAINING_ACCOUNT).read("landing", "porto.csv") == data.read_bytes()
    assert fake.calls("PUT", "/datastores/raw")[0].body["properties"]["accountName"] == TRAINING_ACCOUNT


def test_a_missing_file_is_one_line(cli_workspace, fake, tmp_path):
    result = CliRunner().invoke(main, ["datastore", "upload", "--file", str(tmp_path / "nope.csv"), *AZURE])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: --file {tmp_path / 'nope.csv'}: no such file; give the training data " \
                                    "file to upload"
    assert fake.requests == []


def test_what_the_aci_deployer_builds_on(azure_ws, fake, storage, tmp_path):
    assert azure_ws.location() == "westeurope"
    assert azure_ws.default_storage() == (STORAGE_ACCOUNT, f"https://{STORAGE_ACCOUNT}.blob.{storage.suffix}/")
    assert azure_ws.client_kwargs["transport"] is azure_ws.transport
    assert azure_ws.cloud.arm_endpoint == "https://management.azure.com/"
    assert (azure_ws.subscription_id, azure_ws.resource_group, azure_ws.workspace_name) == \
        (SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)

    files = tmp_path / "model"
    files.mkdir()
    (files / "model.txt").write_text("tree 0\n")
    model = azure_ws.register_model("safe-driver", files, {"auc": "0.7"}, {}, None)
    downloaded = azure_ws.download_model(model, tmp_path / "downloaded")
    # the layout AZUREML_MODEL_DIR has in an Azure ML deployment: <model folder name>/<files>
    assert downloaded == tmp_path / "downloaded" / "safe-driver"
    assert (downloaded / "model" / "model.txt").read_text() == "tree 0\n"
    assert KEY not in str(fake.requests)
    assert not fake.problems


def test_the_cli_does_the_mission_with_backend_azure(cli_workspace, fake, training_project, training_data):
    fake.job_outputs = {"model": {"model.txt": b"tree 0\n"}, "metrics": {"metrics.json": b'{"auc": 0.7}'}}
    runner = CliRunner()
    published = runner.invoke(main, ["publish", str(training_project / "pipeline.yml"), "--version", "5", *AZURE])
    assert published.exit_code == 0, published.output
    assert published.stdout.startswith("published safe_driver_training version 5 (/subscriptions/")

    submitted = runner.invoke(main, ["submit", "safe_driver_training", "--set", f"inputs.training_data={training_data}",
                                     "--tag", "build_id=42", "--no-reuse", *AZURE])
    assert submitted.exit_code == 0, submitted.output
    assert "Completed" in submitted.stdout and "metrics: auc=0.7000" in submitted.stdout
    run_id = fake.calls("PUT", "/jobs/")[0].path.rsplit("/", 1)[1]
    assert fake.calls("PUT", "/jobs/")[0].body["properties"]["settings"]["force_rerun"] is True

    listed = runner.invoke(main, ["runs", "list", *AZURE])
    assert run_id in listed.stdout and "safe_driver_training:5" in listed.stdout
    registered = runner.invoke(main, ["models", "register", "safe-driver", "--run", run_id, *AZURE])
    assert registered.exit_code == 0, registered.output
    assert registered.stdout.strip() == "registered safe-driver:1"
    shown = runner.invoke(main, ["models", "show", "safe-driver", "--output", "json", *AZURE])
    # registered from azureml://jobs/<run>/outputs/model, kept as the datastore path the train step wrote to
    assert re.search(r'"path": "azureml://subscriptions/[^"]+/datastores/workspaceblobstore/paths/azureml/'
                     r'[0-9a-f-]{36}/model/"', shown.stdout)
    assert f'"run_id": "{run_id}"' in shown.stdout
    assert not fake.problems and not fake.unhandled
