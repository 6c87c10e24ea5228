"""Shared pieces of the Azure ML contract tests (importable by the tests; conftest.py re-exports the fixtures):
Azurite (session), the fake Azure ML service (per test), a credential that mints test tokens, and an AzureWorkspace
wired to both through the real azure SDK clients."""
from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from azurite import Azurite, azurite_available, resolve_localhost_names
from prerequisites import missing

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
RESOURCE_GROUP = "rg-amlops"
WORKSPACE = "mlw-amlops"
STORAGE_ACCOUNT = "amlopsstore"
TRAINING_ACCOUNT = "amlopsdata"
KEY = base64.b64encode(b"amlops-test-storage-key-32-bytes").decode()
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# retries and long-running-operation polls fast, but as many as the SDK's default policy would make
FAST_RETRIES = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "polling_interval": 0.01}


class TokenMinter:
    """A TokenCredential that mints unsigned JWTs with the issuer and audience Entra ID would put in them
    (Azurite checks those) and remembers the scopes asked for."""

    def __init__(self):
        self.scopes: list[str] = []
        self.object_id = str(uuid.uuid4())  # the signed-in principal's object id (the `oid` claim)

    def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes += scopes
        audience = scopes[0].removesuffix("/.default").removesuffix("/") if scopes else ""
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT,
                  "oid": self.object_id, "iat": int(time.time()) - 60, "nbf": int(time.time()) - 60,
                  "exp": int(time.time()) + 3600}
        token = ".".join(_b64(json.dumps(part).encode()) for part in ({"alg": "none", "typ": "JWT"}, claims))
        return AccessToken(token + ".c2lnbmF0dXJl", claims["exp"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    pytest.importorskip("azure.ai.ml")
    reason = azurite_available()
    if reason:
        if os.environ.get("AMLOPS_REQUIRE_AZURITE"):
            pytest.fail(reason)
        missing(reason)
    server = Azurite(tmp_path_factory.mktemp("azurite"), {STORAGE_ACCOUNT: KEY, TRAINING_ACCOUNT: KEY}).start()
    yield server
    server.stop()


def forget_current_cloud(monkeypatch) -> None:
    """azure-ai-ml sets AZUREML_CURRENT_CLOUD process-wide (children inherit it): undo that after the test."""
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")  # records the original state for the undo
    monkeypatch.delenv("AZUREML_CURRENT_CLOUD")


@pytest.fixture
def storage(azurite, monkeypatch):
    """This process trusts Azurite's certificate and resolves <account>.blob.localhost to it."""
    resolve_localhost_names(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite.cert))
    forget_current_cloud(monkeypatch)
    return azurite


def blob_client(azurite, account: str = STORAGE_ACCOUNT):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(azurite.url(account), credential={"account_name": account, "account_key": KEY},
                             connection_verify=str(azurite.cert))


class Blobs:
    """The blob side of the fake service's "compute": containers and files in Azurite, with the account key."""

    def __init__(self, azurite, account: str = STORAGE_ACCOUNT):
        self.service = blob_client(azurite, account)

    def create_container(self, name: str) -> None:
        self.service.create_container(name)

    def write(self, container: str, path: str, content: bytes) -> None:
        self.service.get_blob_client(container, path).upload_blob(content, overwrite=True)

    def read(self, container: str, path: str) -> bytes:
        return self.service.get_blob_client(container, path).download_blob().readall()

    def exists(self, container: str, path: str) -> bool:
        return self.service.get_blob_client(container, path).exists()


@pytest.fixture
def fake(storage):
    from aml_fake import FakeAzureML

    blobs = Blobs(storage)
    instance = FakeAzureML(subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, workspace=WORKSPACE,
                           storage_account=STORAGE_ACCOUNT, storage_key=KEY, storage_suffix=storage.suffix,
                           storage=blobs, container=f"azureml-blobstore-{uuid.uuid4().hex[:12]}")
    blobs.create_container(instance.container)
    yield instance
    assert not instance.answer_problems, "the fake answered outside the spec:\n" + "\n".join(instance.answer_problems)


@pytest.fixture
def credential():
    return TokenMinter()


@pytest.fixture
def test_cloud(storage):
    from amlops.workspace.azure.cloud import AzureCloud

    # a custom cloud: the public cloud's Resource Manager, with Azurite as its storage suffix
    return AzureCloud(f"AmlopsTest{storage.port}", "https://management.azure.com/", "login.microsoftonline.com",
                      storage.suffix)


@pytest.fixture
def azure_ws(fake, credential, test_cloud):
    from amlops.workspace.azure.workspace import AzureWorkspace

    return AzureWorkspace(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, credential, cloud=test_cloud,
                          transport=fake.transport(), client_kwargs=dict(FAST_RETRIES), poll_interval_s=0)


@pytest.fixture
def training_data(azure_ws, tmp_path: Path) -> str:
    """The sample's data where docs/setup.md (step 4) puts it: the template's `trainingdata` container of the
    workspace's storage account, behind the identity-based (credential-less) datastore `training_data`."""
    data = tmp_path / "porto_seguro_sample.csv"
    data.write_text("id,target,ps_ind_01\n1,0,2\n2,1,5\n")
    return azure_ws.upload_to_datastore("training_data", data, "porto_seguro_sample.csv")


@pytest.fixture
def training_project(tmp_path: Path) -> Path:
    """A copy of the sample training project (pipeline, components, code)."""
    import shutil

    repo = Path(__file__).resolve().parents[2]
    project = tmp_path / "training"
    shutil.copytree(repo / "training", project, ignore=shutil.ignore_patterns("tests", "__pycache__", "data"))
    (project / "data").mkdir()
    (project / "data" / "porto_seguro_sample.csv").write_text("id,target\n1,0\n")
    return project
