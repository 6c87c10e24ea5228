"""The workspace's resources an ACI deployment uses, found through Azure Resource Manager.

* the container registry linked to the workspace: its login server (images other than mcr.microsoft.com's
  come from there, the Caddy gateway image included);
* the user-assigned identity `<workspace>-aci` that environment_setup/azuredeploy.json creates next to the
  workspace: the group pulls images and reads its package with it;
* the key vault linked to the workspace: the scoring keys live there.

Each can be given instead (AciOptions), e.g. for a workspace not made by the template.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from amlops.deploy.aci.group import Identity
from amlops.errors import AmlopsError

IDENTITY_SUFFIX = "-aci"
API_VERSIONS = {"microsoft.containerregistry/registries": "2023-07-01",
                "microsoft.keyvault/vaults": "2023-07-01",
                "microsoft.managedidentity/userassignedidentities": "2023-01-31"}
MAX_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class AciResources:
    registry: str  # login server, e.g. acrdemo.azurecr.io
    identity: Identity
    key_vault: str  # vault URI, e.g. https://kv-demo.vault.azure.net/


def identity_id(ws: Any, name: str | None = None) -> str:
    name = name or f"{ws.workspace_name}{IDENTITY_SUFFIX}"
    return (f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")


def resolve(ws: Any, client: Any, registry: str | None = None, identity: str | None = None,
            key_vault: str | None = None) -> AciResources:
    """The resources, from the given values or else from the workspace's links and the template's conventions."""
    if not registry:
        registry = _property(client, _linked(ws, "container_registry"), "loginServer")
    resource_id = identity if identity and identity.startswith("/") else identity_id(ws, identity)
    client_id = _property(client, resource_id, "clientId")
    return AciResources(registry.lower(), Identity(resource_id, client_id), vault_uri(ws, client, key_vault))


def vault_uri(ws: Any, client: Any, key_vault: str | None = None) -> str:
    return key_vault or _property(client, _linked(ws, "key_vault"), "vaultUri")


def _linked(ws: Any, what: str) -> str:
    value = ws.linked_resources().get(what)
    if not value:
        raise AmlopsError(f"workspace {ws.workspace_name} has no linked {what.replace('_', ' ')}; create the workspace "
                          "with environment_setup/azuredeploy.json, or give one in the deployment options")
    return value


def _property(client: Any, resource_id: str, name: str) -> str:
    """One property of an Azure resource, read with the ARM client's own pipeline (credential, cloud, retries)."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    kind = "/".join(resource_id.strip("/").split("/")[-3:-1]).lower()
    request = HttpRequest("GET", f"{resource_id}?api-version={API_VERSIONS[kind]}")
    try:
        response = client._send_request(request)  # the generated client's public way to send any ARM request
        if response.status_code == 404:
            raise AmlopsError(f"{resource_id} does not exist; create it with environment_setup/azuredeploy.json "
                              "(it makes the identity, the registry and the key vault of ACI deployments)")
        response.raise_for_status()
        data = response.read()
        if len(data) > MAX_ANSWER_BYTES:
            raise AmlopsError(f"Resource Manager's answer for {resource_id} is over {MAX_ANSWER_BYTES} bytes")
        body = json.loads(data)
    except HttpResponseError as error:
        raise AmlopsError(f"Azure refused to read {resource_id}: HTTP {error.status_code}; give the pipeline's "
                          "identity Reader (or Contributor) on the resource group") from None
    value = (body.get("properties") or {}).get(name)
    if not value:
        raise AmlopsError(f"{resource_id} has no {name}; check that resource")
    return value
