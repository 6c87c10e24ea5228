"""What an online endpoint looks like to the rollout, whichever backend holds it, and the names it accepts."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from amlops.errors import AmlopsError
from amlops.workspace.entities import ModelVersion

# https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints
# endpoint and deployment names: begin with a letter, 3-32 characters, letters, digits and hyphens
# (azure-ai-ml checks the same before it sends: _utils/_endpoint_utils.validate_endpoint_or_deployment_name)
NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
AUTH_MODES = ("key", "aml_token", "aad_token")


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name or ""):
        raise AmlopsError(f"{kind} name '{name}' is not valid: use 3-32 letters, digits and hyphens, starting with a "
                          "letter and not ending with a hyphen (Azure ML's rule for online endpoints)")
    return name


@dataclass(frozen=True)
class EndpointDeployment:
    name: str
    model: str  # name:version
    status: str
    instance_type: str = ""
    instance_count: int = 1


@dataclass(frozen=True)
class Endpoint:
    name: str
    scoring_uri: str
    auth_mode: str
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    deployments: tuple[EndpointDeployment, ...] = ()
    status: str = "Succeeded"

    @property
    def live(self) -> str | None:
        """The deployment with the most traffic (the one a rollout replaces)."""
        serving = [(percent, name) for name, percent in self.traffic.items() if percent > 0]
        return max(serving)[1] if serving else None

    def deployment(self, name: str) -> EndpointDeployment | None:
        return next((d for d in self.deployments if d.name == name), None)


@dataclass(frozen=True)
class DeploymentSpec:
    """A new deployment: a registered model version, the scoring folder as code, its requirements as the
    environment, and the compute."""
    name: str
    model: ModelVersion
    scoring_folder: Path
    entry_script: str = "score.py"
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1


class EndpointBackend(Protocol):
    """The operations the rollout needs; `LocalEndpoints` and `AzureEndpoints` implement them."""

    kind: str

    def get(self, name: str) -> Endpoint | None: ...

    def list(self) -> list[Endpoint]: ...

    def create(self, name: str, auth_mode: str) -> Endpoint: ...

    def create_deployment(self, endpoint: str, spec: DeploymentSpec) -> None: ...

    def set_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None) -> Endpoint: ...

    def delete_deployment(self, endpoint: str, deployment: str) -> None: ...

    # sent without waiting for the change to be applied (an interrupted rollout has seconds before it is killed)
    def request_traffic(self, endpoint: str, traffic: dict[str, int]) -> None: ...

    def request_deployment_delete(self, endpoint: str, deployment: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def key(self, name: str) -> str | None: ...
