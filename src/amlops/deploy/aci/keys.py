"""The scoring keys of ACI deployments, kept as secrets in the workspace's key vault (Azure RBAC).

One secret per deployment, `amlops-<deployment>-scoring-key`. Only identities with a Key Vault data role on
the vault can read it (environment_setup/azuredeploy.json gives the pipeline's identity "Key Vault Secrets
Officer"); Contributor on the resource group is not enough, and no storage role opens it. Deleting a
deployment deletes its secret softly (the vault keeps it for its retention period); a later deploy under the
same name recovers it before writing the new key, as Key Vault refuses to reuse the name of a deleted secret.
"""
from __future__ import annotations

from typing import Any

from amlops.errors import AmlopsError

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
        with _KeyVaultErrors("store the scoring key", self.vault_url):
            try:
                self._set(name, deployment, key)
            except ResourceExistsError:  # 409: a deleted secret of that name, kept by soft delete
                self.client.begin_recover_deleted_secret(name).wait()
                self._set(name, deployment, key)

    def _set(self, name: str, deployment: str, key: str) -> None:
        self.client.set_secret(name, key, content_type=CONTENT_TYPE, tags={"amlops-deployment": deployment})

    def load(self, deployment: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        with _KeyVaultErrors("read the scoring key", self.vault_url):
            try:
                return self.client.get_secret(secret_name(deployment)).value
            except ResourceNotFoundError:
                return None

    def delete(self, deployment: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with _KeyVaultErrors("delete the scoring key", self.vault_url):
            try:
                self.client.begin_delete_secret(secret_name(deployment)).wait()
            except ResourceNotFoundError:
                pass


class _KeyVaultErrors:
    """Key Vault errors as one actionable line; the secret's value is never part of them."""

    def __init__(self, action: str, vault_url: str):
        self.action, self.vault_url = action, vault_url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

        if error is None or isinstance(error, ResourceNotFoundError):
            return False
        if isinstance(error, ClientAuthenticationError) and getattr(error, "status_code", None) is None:
            raise AmlopsError(f"could not sign in to key vault {self.vault_url} to {self.action}; check the service "
                              "connection") from None
        if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
            raise AmlopsError(f"key vault {self.vault_url} refused to {self.action} (HTTP {error.status_code}); give "
                              "the pipeline's identity the 'Key Vault Secrets Officer' role on it") from None
        if isinstance(error, HttpResponseError):
            code = getattr(getattr(error, "error", None), "code", None) or ""
            raise AmlopsError(f"key vault {self.vault_url} failed to {self.action}: HTTP {error.status_code} {code}; "
                              "retry, or check the vault") from None
        return False
