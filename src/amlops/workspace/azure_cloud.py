"""Azure clouds (public and sovereign) and the credential that goes with each: no Azure SDK is imported
until a credential is built."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from amlops.errors import AmlopsError


@dataclass(frozen=True)
class AzureCloud:
    """The endpoints of one Azure cloud: Resource Manager, the Entra authority host, the storage suffix."""

    name: str
    arm_endpoint: str
    authority: str
    storage_suffix: str
    portal: str = "https://portal.azure.com/"
    aml_resource_id: str = "https://ml.azure.com/"
    registry_discovery: str = "https://eastus.api.azureml.ms/"

    @property
    def arm_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"

    @property
    def known_to_azure_ai_ml(self) -> bool:
        return self.name in CLOUDS

    def blob_endpoint(self, account: str) -> str:
        """https://<account>.blob.<suffix>/, the way azure-ai-ml builds it for datastores."""
        return f"https://{account}.blob.{self.storage_suffix}/"

    def ml_client_kwargs(self) -> dict[str, Any]:
        """What MLClient needs to talk to this cloud: its name, plus the metadata of a custom cloud."""
        if self.known_to_azure_ai_ml:
            return {"cloud": self.name}
        metadata = {"azure_portal": self.portal, "resource_manager": self.arm_endpoint,
                    "active_directory": f"https://{self.authority}/", "aml_resource_id": self.aml_resource_id,
                    "storage_endpoint": self.storage_suffix, "registry_discovery_endpoint": self.registry_discovery}
        return {"cloud": self.name, "cloud_metadata": metadata}


CLOUDS = {
    "AzureCloud": AzureCloud("AzureCloud", "https://management.azure.com/", "login.microsoftonline.com",
                             "core.windows.net"),
    "AzureChinaCloud": AzureCloud("AzureChinaCloud", "https://management.chinacloudapi.cn/", "login.chinacloudapi.cn",
                                  "core.chinacloudapi.cn", "https://portal.azure.cn/", "https://ml.azure.cn/",
                                  "https://chinaeast2.api.ml.azure.cn/"),
    "AzureUSGovernment": AzureCloud("AzureUSGovernment", "https://management.usgovcloudapi.net/",
                                    "login.microsoftonline.us", "core.usgovcloudapi.net", "https://portal.azure.us/",
                                    "https://ml.azure.us/", "https://usgovarizona.api.ml.azure.us/"),
}


def resolve_cloud(cloud: str | AzureCloud | None, env: Mapping[str, str] = os.environ) -> AzureCloud:
    """`cloud` (a name, any case, or an AzureCloud), else $AZURE_CLOUD, else the public cloud."""
    if isinstance(cloud, AzureCloud):
        return cloud
    name = cloud or env.get("AZURE_CLOUD") or "AzureCloud"
    for known, value in CLOUDS.items():
        if known.lower() == name.strip().lower():
            return value
    raise AmlopsError(f"unknown Azure cloud '{name}'; use one of {', '.join(CLOUDS)} (--cloud or AZURE_CLOUD)")


def make_credential(cloud: AzureCloud, tenant_id: str | None = None, client_id: str | None = None,
                    client_secret: str | None = None) -> Any:
    """A service principal from explicit values, else DefaultAzureCredential (environment variables
    AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, workload identity, managed identity, Azure CLI...),
    both against the cloud's authority."""
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential
    except ImportError:
        raise AmlopsError("the azure backend needs the Azure packages; install them with "
                          "pip install 'amlops[azure]'") from None
    explicit = [tenant_id, client_id, client_secret]
    if any(explicit):
        if not all(explicit):
            raise AmlopsError("a service principal needs all of tenant id, client id and client secret; give the "
                              "three, or none to use the environment / DefaultAzureCredential")
        return ClientSecretCredential(tenant_id, client_id, client_secret, authority=cloud.authority)
    return DefaultAzureCredential(authority=cloud.authority, exclude_interactive_browser_credential=True)
