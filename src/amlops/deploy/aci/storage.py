"""What an ACI deployment keeps in the workspace's storage account, reached with Entra ID (no account keys).

* the package: one deterministic tar.gz holding the scoring folder at its root and the registered model
  under `azureml-models/<name>/<version>/`, the layout of /var/azureml-app in an Azure ML inference
  container; named by its content hash, so an unchanged package is uploaded once;
* nothing else: the group reads the package with its own identity (Storage Blob Data Reader on the
  container), so no SAS is signed, and the scoring key lives in the key vault (aci.keys), never here.

Everything lives in the container `amlops-deployments` under `<deployment>/`. The identity needs the
"Storage Blob Data Contributor" role on the account.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from amlops.deploy.aci.service_errors import ServiceErrors
from amlops.errors import AmlopsError

CONTAINER = "amlops-deployments"
MODELS_FOLDER = "azureml-models"
_IGNORED = {"__pycache__", ".git", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size: int

    def blob_name(self, deployment: str) -> str:
        return f"{deployment}/packages/{self.sha256[:32]}.tar.gz"


def build_package(model_dir: Path, model_name: str, model_version: int, scoring_folder: Path,
                  destination: Path) -> Package:
    """The tar.gz of the scoring folder and the model files; same inputs give the same bytes."""
    if (scoring_folder / MODELS_FOLDER).exists():
        raise AmlopsError(f"the scoring folder {scoring_folder} contains '{MODELS_FOLDER}', where the model goes in "
                          "the container; rename that folder")
    members = list(_files(scoring_folder, ""))
    members += list(_files(model_dir, f"{MODELS_FOLDER}/{model_name}/{model_version}/"))
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, path in sorted(members):
                tar.addfile(_info(name, path), path.open("rb"))
    data = raw.getvalue()
    destination.write_bytes(data)
    return Package(destination, hashlib.sha256(data).hexdigest(), len(data))


def _files(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not _IGNORED.intersection(relative.parts):
            yield prefix + relative.as_posix(), path


def _info(name: str, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o644
    info.mtime = 0
    return info


class DeploymentStorage:
    """The deployment's blobs in the workspace's default storage account."""

    def __init__(self, credential: Any, account: str, blob_endpoint: str, client_kwargs: dict[str, Any]):
        from azure.storage.blob import BlobServiceClient

        self.account = account
        self.service = BlobServiceClient(blob_endpoint, credential=credential, **client_kwargs)

    def upload(self, package: Package, deployment: str) -> str:
        """Upload the package unless the same content is there already; returns its blob name."""
        from azure.core.exceptions import ResourceExistsError

        name = package.blob_name(deployment)
        with self._translated("upload the deployment package"):
            self._ensure_container()
            blob = self.service.get_blob_client(CONTAINER, name)
            if blob.exists() and blob.get_blob_properties().size == package.size:
                return name
            with package.path.open("rb") as data:
                try:
                    blob.upload_blob(data, overwrite=True, length=package.size)
                except ResourceExistsError:  # a concurrent upload of the same content
                    pass
        return name

    def blob_url(self, blob_name: str) -> str:
        """The blob's https URL, without any SAS: the deployment's identity opens it with a token."""
        url = self.service.get_blob_client(CONTAINER, blob_name).url
        if not url.startswith("https://"):
            raise AmlopsError(f"the storage endpoint of account {self.account} is not https; tokens only travel "
                              "over https")
        return url

    def delete(self, deployment: str) -> int:
        """Remove every blob of the deployment; returns how many."""
        from azure.core.exceptions import ResourceNotFoundError

        container = self.service.get_container_client(CONTAINER)
        count = 0
        with self._translated("delete the deployment's blobs"):
            try:
                for blob in list(container.list_blobs(name_starts_with=f"{deployment}/")):
                    container.delete_blob(blob.name)
                    count += 1
            except ResourceNotFoundError:
                return count
        return count

    def _ensure_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.service.create_container(CONTAINER)
        except ResourceExistsError:
            pass

    def _translated(self, action: str) -> ServiceErrors:
        return ServiceErrors(action, f"storage account {self.account}", "Storage Blob Data Contributor")
