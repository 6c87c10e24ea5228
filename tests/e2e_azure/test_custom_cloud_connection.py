"""AzureRM service connections for Azure Stack Hub and other custom clouds (environment `AzureStack`): the cloud
comes from the connection's Resource Manager URL and data, or from the cloud's metadata endpoint, and the
credential signs in at that cloud's Entra ID without asking login.microsoftonline.com to validate it.

The cloud is `stack_cloud`'s: its hosts are reached through `https_proxy` (the proxy plays DNS for them) and its
certificate is trusted through REQUESTS_CA_BUNDLE, as on an agent in such a network."""
from __future__ import annotations

import pytest

from amlops.devops import endpoint
from amlops.errors import AmlopsError
from amlops.workspace.azure.cloud import CLOUDS, AzureCloud, make_credential, resource_manager_cloud
from devops_agent import Connection
from stack_cloud import ARM_HOST, DOMAIN, LOGIN_HOST, RESOURCE_MANAGER, STORAGE_SUFFIX, ConnectProxy, FakeEntra, \
    FrontDoor

TENANT = "3f6b7a51-9c3d-4c1e-8d4f-0b1c2d3e4f50"
CLIENT = "8a1f2e3d-4c5b-4a69-9788-1a2b3c4d5e6f"
SECRET = "spn-unit-secret-0123456789"


def stack_connection(**data: str) -> Connection:
    return Connection("ServicePrincipal", {"tenantid": TENANT, "serviceprincipalid": CLIENT,
                                           "authenticationType": "spnKey", "serviceprincipalkey": SECRET},
                      data={"subscriptionId": "6c2a1b3e-0000-4d5e-9f00-00000000a2b1", "subscriptionName": "stack",
                            "environment": "AzureStack", "scopeLevel": "Subscription", **data},
                      url=RESOURCE_MANAGER)


@pytest.fixture
def cloud_network(tmp_path, monkeypatch):
    """The custom cloud's Resource Manager (metadata only) and Entra ID on loopback, behind the proxy."""
    pytest.importorskip("azure.identity")
    from azurite import make_certificate

    certificate, key = make_certificate(tmp_path, [ARM_HOST, LOGIN_HOST])
    door = FrontDoor(certificate, key, FakeEntra(TENANT, CLIENT, SECRET)).start()
    proxy = ConnectProxy(lambda host: door.port if host in (ARM_HOST, LOGIN_HOST) else None).start()
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
    yield door, proxy
    proxy.stop()
    door.stop()


def test_the_connection_data_names_the_authority_without_any_request() -> None:
    connection = stack_connection(activeDirectoryAuthority=f"https://{LOGIN_HOST}/")
    parsed = endpoint.read_connection(connection.id, connection.environment())
    cloud = parsed.cloud
    assert (cloud.name, cloud.arm_endpoint, cloud.authority, cloud.storage_suffix) == \
        ("AzureStack", RESOURCE_MANAGER, LOGIN_HOST, STORAGE_SUFFIX)
    assert (parsed.environment, parsed.resource_manager, parsed.authority_host) == \
        ("AzureStack", RESOURCE_MANAGER, LOGIN_HOST)
    assert cloud.blob_endpoint("acct") == f"https://acct.blob.{STORAGE_SUFFIX}/"
    assert cloud.arm_scope == f"{RESOURCE_MANAGER}.default"
    metadata = cloud.ml_client_kwargs()["cloud_metadata"]
    assert metadata["resource_manager"] == RESOURCE_MANAGER and metadata["storage_endpoint"] == STORAGE_SUFFIX
    assert metadata["active_directory"] == f"https://{LOGIN_HOST}/"
    credential = endpoint.make_credential(parsed, {})
    assert credential._authority == f"https://{LOGIN_HOST}" and credential._instance_discovery is False


def test_the_older_environment_authority_url_is_read_too() -> None:
    connection = stack_connection(environmentAuthorityUrl=f"https://{LOGIN_HOST}")
    assert endpoint.read_connection(connection.id, connection.environment()).authority_host == LOGIN_HOST


def test_without_authority_the_metadata_endpoint_tells_it_and_the_credential_signs_in_there(cloud_network) -> None:
    door, proxy = cloud_network
    connection = stack_connection()
    parsed = endpoint.read_connection(connection.id, connection.environment())
    assert door.metadata_reads == 1
    assert (parsed.cloud.authority, parsed.cloud.portal) == (LOGIN_HOST, f"https://portal.{DOMAIN}/")
    token = endpoint.make_credential(parsed, {}).get_token(parsed.cloud.arm_scope)
    assert door.entra.check(f"Bearer {token.token}", RESOURCE_MANAGER) is None
    # MSAL went straight to this cloud's Entra ID: no instance discovery at login.microsoftonline.com
    assert proxy.refused == [] and {t.rsplit(":", 1)[0] for t in proxy.tunnels} == {ARM_HOST, LOGIN_HOST}


def test_an_unreachable_metadata_endpoint_says_what_to_check(cloud_network) -> None:
    door, _ = cloud_network
    connection = stack_connection()
    connection.url = f"https://{LOGIN_HOST}/"  # a host that has no metadata endpoint (404)
    with pytest.raises(AmlopsError, match=rf"service connection '{connection.id}' \(AzureStack\): cannot read the "
                                          rf"cloud's sign-in endpoint from https://{LOGIN_HOST}/metadata/endpoints"
                                          r"\?api-version=2015-01-01 \(404 .*\); check that the agent reaches"):
        endpoint.read_connection(connection.id, connection.environment())


@pytest.mark.parametrize("url, authority, message", [
    ("http://management.stack.example/", None, "is not an https URL of the form https://management.<domain>/"),
    ("https://localhost/", None, "is not an https URL of the form"),
    (RESOURCE_MANAGER, "https://adfs.stack.example/adfs/", "signs in with AD FS"),
    (RESOURCE_MANAGER, "http://login.stack.example/", "is not an https URL"),
])
def test_unusable_custom_clouds_are_refused_before_any_request(url: str, authority: str | None, message: str) -> None:
    with pytest.raises(AmlopsError, match=message):
        resource_manager_cloud(url, authority)


def test_the_storage_suffix_follows_the_resource_manager_host_like_azure_stack_tooling() -> None:
    cloud = resource_manager_cloud("https://Management.Local.AzureStack.External", "login.example.test")
    assert cloud.arm_endpoint == "https://Management.Local.AzureStack.External/"
    assert cloud.storage_suffix == "local.azurestack.external"


def test_public_and_sovereign_clouds_keep_instance_discovery() -> None:
    for cloud in CLOUDS.values():
        assert cloud.msal_options() == {"authority": cloud.authority}
    custom = AzureCloud("Custom", RESOURCE_MANAGER, LOGIN_HOST, STORAGE_SUFFIX)
    assert custom.msal_options() == {"authority": LOGIN_HOST, "disable_instance_discovery": True}
    credential = make_credential(custom, TENANT, CLIENT, SECRET)
    assert credential._instance_discovery is False
    public = endpoint.read_connection(*_public())
    assert public.cloud is CLOUDS["AzureCloud"] and public.resource_manager == "https://management.azure.com/"


def _public() -> tuple[str, dict]:
    connection = stack_connection()
    connection.data["environment"] = "AzureCloud"
    connection.url = "https://management.azure.com/"
    return connection.id, connection.environment()


def test_the_workspace_gets_the_custom_cloud() -> None:
    pytest.importorskip("azure.ai.ml")
    from amlops import api

    cloud = resource_manager_cloud(RESOURCE_MANAGER, LOGIN_HOST)
    ws = api.open_workspace("azure", subscription_id="s", resource_group="rg", workspace_name="w",
                            credential=object(), cloud=cloud)
    assert ws.cloud is cloud and not cloud.known_to_azure_ai_ml
