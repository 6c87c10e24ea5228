"""Training data on Azure: upload a file to a blob container and register an AzureBlobDatastore for it,
identity-based (no key or SAS stored in the workspace: jobs read it with their compute's identity)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from amlops.errors import AmlopsError
from amlops.workspace.azure.errors import translated

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace

DEFAULT_CONTAINER = "trainingdata"


def upload(ws: "AzureWorkspace", datastore: str, file: Path, path: str | None, container: str = DEFAULT_CONTAINER,
           storage_account: str | None = None) -> str:
    file = Path(file)
    if not file.is_file():
        raise AmlopsError(f"--file {file}: no such file; give the training data file to upload")
    relative = (path or file.name).lstrip("/")
    account, endpoint = _account(ws, storage_account)
    _upload_blob(ws, endpoint, account, container, relative, file)
    _register_datastore(ws, datastore, account, container)
    return f"azureml://datastores/{datastore}/paths/{relative}"


def _account(ws: "AzureWorkspace", storage_account: str | None) -> tuple[str, str]:
    if storage_account:
        return storage_account, ws.cloud.blob_endpoint(storage_account)
    return ws.default_storage()


def _upload_blob(ws: "AzureWorkspace", endpoint: str, account: str, container: str, relative: str,
                 file: Path) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(endpoint, credential=ws.credential, **ws.client_kwargs)
    with translated(f"blob container {container} in storage account {account}"):
        try:
            service.create_container(container)
        except ResourceExistsError:
            pass
    with translated(f"uploading {file.name} to {container}/{relative} in storage account {account}"):
        with file.open("rb") as data:
            service.get_blob_client(container, relative).upload_blob(data, overwrite=True)


def _register_datastore(ws: "AzureWorkspace", name: str, account: str, container: str) -> None:
    from azure.ai.ml.entities import AzureBlobDatastore

    datastore = AzureBlobDatastore(name=name, account_name=account, container_name=container, protocol="https",
                                   endpoint=ws.cloud.storage_suffix,
                                   description=f"training data in {account}/{container} (registered by amlops)")
    with translated(f"datastore {name} in workspace {ws.workspace_name}"):
        ws.ml_client.datastores.create_or_update(datastore)
