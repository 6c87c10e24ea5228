"""Azure clouds (public and sovereign) and the credential that goes with each: no Azure SDK is imported
until a credential is built."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from amlops.errors import AmlopsError

# Entra ID hosts MSAL knows. Any other authority (a custom cloud's) cannot be validated through the instance
# discovery of login.microsoftonline.com, which such a cloud may not even reach, so that check is off for it.
MICROSOFT_AUTHORITIES = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn", "login.microsoftonline.us", "login-us.microsoftonline.com",
    "login.usgovcloudapi.net",
})
METADATA_API_VERSION = "2015-01-01"  # what Azure Stack Hub's Resource Manager and Azure's own tasks use


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

    @property
    def well_known_authority(self) -> bool:
        return self.authority.lower() in MICROSOFT_AUTHORITIES

    def msal_options(self) -> dict[str, Any]:
        """Keyword arguments for azure-identity's MSAL-based credentials (client secret, certificate)."""
        options: dict[str, Any] = {"authority": self.authority}
        if not self.well_known_authority:
            options["disable_instance_discovery"] = True
        return options

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
    from amlops.workspace.azure.client import quiet_azure_logging

    quiet_azure_logging()
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
        return ClientSecretCredential(tenant_id, client_id, client_secret, **cloud.msal_options())
    return DefaultAzureCredential(authority=cloud.authority, exclude_interactive_browser_credential=True)


def resource_manager_cloud(resource_manager: str, authority: str | None = None, name: str = "AzureStack",
                           timeout_s: float = 30) -> AzureCloud:
    """A cloud known by its Resource Manager URL: Azure Stack Hub or another custom cloud, as an Azure DevOps
    service connection for the `AzureStack` environment describes it.

    The storage suffix is the Resource Manager host's domain (`https://management.<domain>/` -> `<domain>`), the
    way Azure's own pipeline tasks derive it. The Entra ID authority is `authority` (a URL or a host) when known,
    else the `loginEndpoint` of the cloud's metadata, `GET <resource manager>/metadata/endpoints`, which is also
    what those tasks read. Tokens are asked for `<resource manager>/.default`, as azure-ai-ml does."""
    parts = urlsplit(resource_manager.strip())
    if parts.scheme != "https" or not parts.hostname or "." not in parts.netloc:
        raise AmlopsError(f"the Resource Manager URL '{resource_manager}' is not an https URL of the form "
                          "https://management.<domain>/; fix the service connection's environment URL")
    arm = f"https://{parts.netloc}{parts.path.rstrip('/')}/"
    domain = parts.netloc.split(".", 1)[1].lower()
    portal = f"https://portal.{domain}/"
    if not authority:
        authority, portal = _metadata_endpoints(arm, timeout_s, portal)
    return AzureCloud(name, arm, _authority_host(authority, arm), domain, portal=portal)


def _metadata_endpoints(arm: str, timeout_s: float, portal: str) -> tuple[str, str]:
    """(login endpoint, portal) from the cloud's metadata; AmlopsError saying what to check when it fails."""
    import requests

    url = f"{arm}metadata/endpoints?api-version={METADATA_API_VERSION}"
    try:
        response = requests.get(url, timeout=timeout_s, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        login = document["authentication"]["loginEndpoint"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AmlopsError(f"cannot read the cloud's sign-in endpoint from {url} ({detail}); check that the agent "
                          "reaches the Resource Manager URL of the service connection") from None
    return login, document.get("portalEndpoint") or portal


def _authority_host(authority: str, arm: str) -> str:
    """`https://login.example/` or `login.example` -> `login.example` (azure-identity takes the host)."""
    text = authority.strip()
    parts = urlsplit(text if "//" in text else f"https://{text}")
    if parts.scheme != "https" or not parts.hostname:
        raise AmlopsError(f"the sign-in endpoint '{authority}' of the cloud at {arm} is not an https URL")
    if parts.path.strip("/").lower() == "adfs":
        raise AmlopsError(f"the cloud at {arm} signs in with AD FS ({authority}), which amlops does not support; "
                          "use a cloud whose identity provider is Entra ID")
    return parts.netloc.lower()
