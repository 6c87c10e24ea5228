"""The scoring keys of ACI deployments, kept as secrets in the workspace's key vault (Azure RBAC).

One secret per deployment, `amlops-<deployment>-scoring-key`. Only identities with a Key Vault data role on
the vault can read it (environment_setup/azuredeploy.json gives the pipeline's identity "Key Vault Secrets
Officer"); Contributor on the resource group is not enough, and no storage role opens it. Deleting a
deployment deletes its secret softly (the vault keeps it for its retention period); a later deploy under the
same name recovers it before writing the new key, as Key Vault refuses to reuse the name of a deleted secret.
"""
from __future__ import annotations

from typing import Any

from amlops.deploy.aci.service_errors import ServiceErrors

CONTENT_TYPE = "text/plain; amlops scoring key"


def secret_name(deployment: str) -> str:
    return f"amlops-{deployment}-scoring-key"


class KeyVaultKeys:
    def __init__(self, credential: Any, vault_url: str, client_kwargs: dict[str, Any]):
        from azure.keyvault.secrets import SecretClient

        self.vault_url = vault_url
        self.client = SecretClient(vault_url, credential, **client_kwargs)

    def save(self, deployment: str, key: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        name = secret_name(deployment)
        with self._errors("store the scoring key"):
            try:
                self._set(name, deployment, key)
            except ResourceExistsError:  # 409: a deleted secret of that name, kept by soft delete
                self.client.begin_recover_deleted_secret(name).wait()
                self._set(name, deployment, key)

    def _errors(self, action: str) -> ServiceErrors:
        return ServiceErrors(action, f"key vault {self.vault_url}", "Key Vault Secrets Officer")

    def _set(self, name: str, deployment: str, key: str) -> None:
        self.client.set_secret(name, key, content_type=CONTENT_TYPE, tags={"amlops-deployment": deployment})

    def load(self, deployment: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._errors("read the scoring key"):
            try:
                return self.client.get_secret(secret_name(deployment)).value
            except ResourceNotFoundError:
                return None

    def delete(self, deployment: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._errors("delete the scoring key"):
            try:
                self.client.begin_delete_secret(secret_name(deployment)).wait()
            except ResourceNotFoundError:
                pass
