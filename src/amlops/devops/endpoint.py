"""AzureRM service connection (`ENDPOINT_*` variables) -> azure-identity credential, subscription, cloud.

The agent exports a connection `<id>` (the value of the connectedService input) as `ENDPOINT_URL_<id>`,
`ENDPOINT_AUTH_<id>` (JSON `{"parameters": {...}, "scheme": "..."}`), `ENDPOINT_AUTH_SCHEME_<id>`,
`ENDPOINT_AUTH_PARAMETER_<id>_<KEY>` and `ENDPOINT_DATA_<id>_<KEY>`; names are matched ignoring case.
azure.identity is imported only when a credential is built.

The cloud is the connection's `environment`: AzureCloud, AzureChinaCloud, AzureUSGovernment, or AzureStack, the
environment Azure DevOps uses for Azure Stack Hub and other custom clouds. Such a connection names its cloud by
`ENDPOINT_URL_<id>` (the Resource Manager URL); its Entra ID authority is the `activeDirectoryAuthority` (or
`environmentAuthorityUrl`) data when present, else the cloud's metadata endpoint tells it, as in Azure's own tasks.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amlops.errors import AmlopsError
from amlops.workspace.azure.cloud import CLOUDS, AzureCloud, resource_manager_cloud

CLOUD_NAMES = {"AZURECLOUD": "AzureCloud", "AZURECHINACLOUD": "AzureChinaCloud",
               "AZUREUSGOVERNMENT": "AzureUSGovernment"}
CUSTOM_CLOUD = "AzureStack"  # the environment of a connection to Azure Stack Hub or another custom cloud
SCHEMES = ("ServicePrincipal", "WorkloadIdentityFederation", "ManagedServiceIdentity")


@dataclass(frozen=True)
class AzureRmConnection:
    id: str
    scheme: str
    url: str
    tenant_id: str
    client_id: str
    subscription_id: str
    subscription_name: str
    environment: str
    authority_host: str
    resource_manager: str
    parameters: Mapping[str, str] = field(default_factory=dict, repr=False)
    cloud: AzureCloud | None = None

    @property
    def authentication_type(self) -> str:
        return self.parameters.get("AUTHENTICATIONTYPE", "spnKey")


def read_connection(connection_id: str, env: Mapping[str, str]) -> AzureRmConnection:
    """The AzureRM connection `connection_id` as the agent exported it; AmlopsError when absent or unusable."""
    upper = {key.upper(): value for key, value in env.items()}
    key = connection_id.strip().upper()
    if not key:
        raise AmlopsError("no Azure service connection given; set the azureSubscription input")
    url = upper.get(f"ENDPOINT_URL_{key}")
    if url is None:
        raise AmlopsError(f"service connection '{connection_id}' is not available to this job; authorize it "
                          "for the pipeline (or check the azureSubscription input names an AzureRM connection)")
    parameters = _parameters(key, upper)
    scheme = upper.get(f"ENDPOINT_AUTH_SCHEME_{key}") or _auth_json(key, upper).get("scheme") or ""
    data = _data(key, upper)
    environment = (data.get("ENVIRONMENT") or "AzureCloud").upper()
    scheme = _canonical_scheme(scheme, connection_id)
    subscription = data.get("SUBSCRIPTIONID", "")
    if not subscription:
        raise AmlopsError(f"service connection '{connection_id}' has no subscription (scope level "
                          f"'{data.get('SCOPELEVEL', '?')}'); use a subscription-scoped AzureRM connection")
    cloud = _cloud(environment, connection_id, url, data)
    return AzureRmConnection(
        id=connection_id.strip(), scheme=scheme, url=url,
        tenant_id=parameters.get("TENANTID", ""), client_id=parameters.get("SERVICEPRINCIPALID", ""),
        subscription_id=subscription, subscription_name=data.get("SUBSCRIPTIONNAME", ""),
        environment=cloud.name, authority_host=cloud.authority, resource_manager=cloud.arm_endpoint,
        parameters=parameters, cloud=cloud)


def _auth_json(key: str, upper: Mapping[str, str]) -> dict:
    try:
        value = json.loads(upper.get(f"ENDPOINT_AUTH_{key}") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parameters(key: str, upper: Mapping[str, str]) -> dict[str, str]:
    """Authorization parameters, keys upper-cased: the JSON object, overridden by the single variables."""
    from_json = _auth_json(key, upper).get("parameters") or {}
    parameters = {str(name).upper(): str(value) for name, value in from_json.items() if value is not None}
    prefix = f"ENDPOINT_AUTH_PARAMETER_{key}_"
    parameters.update({name[len(prefix):]: value for name, value in upper.items() if name.startswith(prefix)})
    return parameters


def _data(key: str, upper: Mapping[str, str]) -> dict[str, str]:
    prefix = f"ENDPOINT_DATA_{key}_"
    return {name[len(prefix):]: value for name, value in upper.items() if name.startswith(prefix)}


def _cloud(environment: str, connection_id: str, url: str, data: Mapping[str, str]) -> AzureCloud:
    if environment in CLOUD_NAMES:
        return CLOUDS[CLOUD_NAMES[environment]]
    if environment == CUSTOM_CLOUD.upper():
        authority = data.get("ACTIVEDIRECTORYAUTHORITY") or data.get("ENVIRONMENTAUTHORITYURL")
        try:
            return resource_manager_cloud(url, authority, name=CUSTOM_CLOUD)
        except AmlopsError as error:
            raise AmlopsError(f"service connection '{connection_id}' ({CUSTOM_CLOUD}): {error}") from None
    known = ", ".join([*CLOUD_NAMES.values(), CUSTOM_CLOUD])
    raise AmlopsError(f"service connection '{connection_id}' targets the '{environment}' cloud, which amlops "
                      f"does not support; use a connection for one of {known}")


def _canonical_scheme(scheme: str, connection_id: str) -> str:
    for known in SCHEMES:
        if known.lower() == scheme.lower():
            return known
    raise AmlopsError(f"service connection '{connection_id}' uses the '{scheme}' scheme; amlops supports "
                      f"{', '.join(SCHEMES)}: recreate it as an Azure Resource Manager connection of one of those")


def job_access_token(env: Mapping[str, str]) -> str:
    """The job's OAuth token: `SYSTEM_ACCESSTOKEN` if mapped, else the SystemVssConnection endpoint's."""
    upper = {key.upper(): value for key, value in env.items()}
    return (upper.get("SYSTEM_ACCESSTOKEN")
            or upper.get("ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN")
            or _auth_json("SYSTEMVSSCONNECTION", upper).get("parameters", {}).get("AccessToken", ""))


def make_credential(connection: AzureRmConnection, env: Mapping[str, str]) -> Any:
    """An azure-identity TokenCredential for the connection's scheme (no network is used to build it)."""
    builders = {"ServicePrincipal": _service_principal, "WorkloadIdentityFederation": _workload_identity,
                "ManagedServiceIdentity": _managed_identity}
    return builders[connection.scheme](connection, env)


def _require(connection: AzureRmConnection, *names: str) -> None:
    missing = [name.lower() for name in names if not connection.parameters.get(name)]
    if missing:
        raise AmlopsError(f"service connection '{connection.id}' ({connection.scheme}) lacks "
                          f"{', '.join(missing)}; edit the connection in Project settings > Service connections")


def _service_principal(connection: AzureRmConnection, env: Mapping[str, str]) -> Any:
    from azure.identity import CertificateCredential, ClientSecretCredential

    if connection.authentication_type.lower() == "spncertificate":
        _require(connection, "TENANTID", "SERVICEPRINCIPALID", "SERVICEPRINCIPALCERTIFICATE")
        pem = connection.parameters["SERVICEPRINCIPALCERTIFICATE"].encode("utf-8")
        try:
            return CertificateCredential(connection.tenant_id, connection.client_id, certificate_data=pem,
                                         **_msal_options(connection))
        except ValueError as error:
            raise AmlopsError(f"service connection '{connection.id}': its certificate cannot be read "
                              f"({_first_line(error)}); upload a PEM with the certificate and its "
                              "unencrypted private key") from None
    _require(connection, "TENANTID", "SERVICEPRINCIPALID", "SERVICEPRINCIPALKEY")
    return ClientSecretCredential(connection.tenant_id, connection.client_id,
                                  connection.parameters["SERVICEPRINCIPALKEY"], **_msal_options(connection))


def _msal_options(connection: AzureRmConnection) -> dict[str, Any]:
    if connection.cloud is not None:
        return connection.cloud.msal_options()
    return {"authority": connection.authority_host}


def _workload_identity(connection: AzureRmConnection, env: Mapping[str, str]) -> Any:
    from azure.identity import AzurePipelinesCredential

    _require(connection, "TENANTID", "SERVICEPRINCIPALID")
    upper = {key.upper(): value for key, value in env.items()}
    if not upper.get("SYSTEM_OIDCREQUESTURI"):
        raise AmlopsError("workload identity federation needs System.OidcRequestUri, which this agent did not "
                          "provide; update the agent (3.227 or later) or use a service principal connection")
    token = job_access_token(env)
    if not token:
        raise AmlopsError("workload identity federation needs the job access token; map it with "
                          "`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)` or allow scripts to access the token")
    return AzurePipelinesCredential(tenant_id=connection.tenant_id, client_id=connection.client_id,
                                    service_connection_id=connection.id, system_access_token=token,
                                    authority=connection.authority_host)


def _managed_identity(connection: AzureRmConnection, env: Mapping[str, str]) -> Any:
    from azure.identity import ManagedIdentityCredential

    client_id = connection.client_id or None
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
