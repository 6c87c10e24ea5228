"""What environment_setup/azuredeploy.json deploys that Azure ML's rules depend on: the compute clusters (name,
managed identity) and the role assignments (who holds which role on what). The fake Azure ML service starts
from it, so a run against the fake tests the template too: a cluster without an identity, or an identity
without a blob data role, makes the run fail as it would in Azure.

The template's expressions are evaluated by the evaluator of tests/test_environment_setup.py (the subset of
ARM functions the template uses); `reference()` of a resource answers the state the fake gives it (the
principal id of a system-assigned identity exists only once Azure made it)."""
from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[2] / "environment_setup" / "azuredeploy.json"
COMPUTE_TYPE = "Microsoft.MachineLearningServices/workspaces/computes"
ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"


@lru_cache(maxsize=1)
def _environment_checks() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "test_environment_setup.py"
    spec = importlib.util.spec_from_file_location("amlops_environment_checks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Compute:
    name: str
    properties: dict
    identity: dict | None  # {"type": "SystemAssigned", "principalId": ..., "tenantId": ...} or None


@dataclass(frozen=True)
class RoleAssignment:
    principal_id: str
    role_definition_id: str  # the built-in role's GUID
    scope: str  # an ARM id in the fake's subscription: the resource group, the workspace or the storage account


@dataclass(frozen=True)
class Deployment:
    computes: list[Compute]
    role_assignments: list[RoleAssignment]


def deploy(template: Path | dict | None, *, subscription: str, resource_group: str, workspace: str,
           storage_account: str, pipeline_principal: str | None) -> Deployment:
    """The template as deployed into the fake's resource group: its workspace is the fake's workspace, its storage
    account the workspace's. `pipeline_principal` is the pipelinePrincipalObjectId parameter ("" or None: the
    template's optional role assignments are not made)."""
    tpl = json.loads(Path(template or TEMPLATE).read_text(encoding="utf-8-sig")) if not isinstance(template, dict) \
        else template
    checks = _environment_checks()
    principals: dict[str, str] = {}

    def runtime(resource_id: str) -> dict:
        principal = principals.setdefault(resource_id.lower(), str(uuid.uuid4()))
        return {"identity": {"type": "SystemAssigned", "principalId": principal, "tenantId": str(uuid.uuid4())},
                "principalId": principal}  # a user-assigned identity's reference() (no 'full')

    evaluator = checks.Evaluator(tpl, {"baseName": workspace.removeprefix("mlw-") or "amlops",
                                       "pipelinePrincipalObjectId": pipeline_principal or ""}, runtime=runtime)
    ids = _Ids(evaluator, tpl, subscription, resource_group, workspace, storage_account)
    computes = []
    for raw in checks.resources_of_type(tpl, COMPUTE_TYPE):
        resource = evaluator.resource(raw)
        identity = None
        if "SystemAssigned" in str((resource.get("identity") or {}).get("type", "")):
            identity = {**runtime(evaluator.full_id(raw))["identity"], "type": resource["identity"]["type"]}
        computes.append(Compute(resource["name"].rsplit("/", 1)[-1], resource.get("properties") or {}, identity))
    assignments = []
    for raw in checks.resources_of_type(tpl, ROLE_ASSIGNMENT_TYPE):
        resource = evaluator.resource(raw)
        if resource.get("condition", True) is False:
            continue
        scope = ids.scope(resource.get("scope"))
        assignments.append(RoleAssignment(resource["properties"]["principalId"],
                                          resource["properties"]["roleDefinitionId"].rsplit("/", 1)[-1], scope))
    return Deployment(computes, assignments)


class _Ids:
    """The template's resource ids, translated to the fake's: the template's workspace and storage account are
    the fake's."""

    def __init__(self, evaluator: Any, tpl: dict, subscription: str, resource_group: str,
                 workspace: str, storage_account: str):
        self.group = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        names = {raw["type"]: evaluator.value(raw["name"]) for raw in tpl["resources"]}
        self.translate = {
            f"Microsoft.MachineLearningServices/workspaces/{names['Microsoft.MachineLearningServices/workspaces']}":
                f"Microsoft.MachineLearningServices/workspaces/{workspace}",
            f"Microsoft.Storage/storageAccounts/{names['Microsoft.Storage/storageAccounts']}":
                f"Microsoft.Storage/storageAccounts/{storage_account}",
        }

    def scope(self, relative: str | None) -> str:
        if not relative:
            return self.group
        return f"{self.group}/providers/{self.translate.get(relative, relative)}"
