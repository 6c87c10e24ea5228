"""Managed online endpoints in an Azure ML workspace, on azure-ai-ml's online endpoint and deployment operations.

A deployment is the registered model version, the scoring folder uploaded as code, and an environment
built by Azure ML from the scoring folder's requirements.txt (a conda file on Azure ML's base image, plus
the inference server), on `instance_count` x `instance_type`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from amlops.deploy.online_endpoint.model import DeploymentSpec, Endpoint, EndpointDeployment, check_name
from amlops.errors import AmlopsError
from amlops.workspace.azure.errors import translated

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace

BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
PYTHON = "3.11"
INFERENCE_SERVER = "azureml-inference-server-http"
AAD_SCOPE = "https://ml.azure.com/.default"


def conda_environment(scoring_folder: Path) -> dict[str, Any]:
    """The deployment's conda file: Python, pip, the scoring folder's requirements and the inference server."""
    requirements = scoring_folder / "requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines() if requirements.is_file() else []
    packages = [line.strip() for line in lines if line.strip() and not line.strip().startswith(("#", "-"))]
    if not any(p.lower().startswith(INFERENCE_SERVER) for p in packages):
        packages.append(INFERENCE_SERVER)
    return {"name": "scoring", "channels": ["conda-forge"],
            "dependencies": [f"python={PYTHON}", "pip", {"pip": packages}]}


class AzureEndpoints:
    kind = "azure"

    def __init__(self, ws: "AzureWorkspace", on_info: Callable[[str], None] = print):
        self.ws = ws
        self.on_info = on_info

    @property
    def _client(self) -> Any:
        return self.ws.ml_client

    def get(self, name: str) -> Endpoint | None:
        from azure.core.exceptions import ResourceNotFoundError

        check_name("endpoint", name)
        with translated(f"online endpoint {name} in workspace {self.ws.workspace_name}"):
            try:
                endpoint = self._client.online_endpoints.get(name)
            except ResourceNotFoundError:
                return None
            deployments = list(self._client.online_deployments.list(name))
        return _endpoint(endpoint, deployments)

    def list(self) -> list[Endpoint]:
        with translated(f"online endpoints in workspace {self.ws.workspace_name}"):
            names = [endpoint.name for endpoint in self._client.online_endpoints.list()]
        return [endpoint for endpoint in map(self.get, names) if endpoint is not None]

    def key(self, name: str) -> str | None:
        with translated(f"the keys of online endpoint {name}"):
            endpoint = self._client.online_endpoints.get(name)
            mode = (endpoint.auth_mode or "key").lower()
            if mode == "aad_token":
                return self.ws.credential.get_token(AAD_SCOPE).token
            credentials = self._client.online_endpoints.get_keys(name)
        return getattr(credentials, "primary_key", None) or getattr(credentials, "access_token", None)

    def create(self, name: str, auth_mode: str) -> Endpoint:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        check_name("endpoint", name)
        with translated(f"online endpoint {name} in workspace {self.ws.workspace_name}"):
            self._client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(
                name=name, auth_mode=auth_mode, description="deployed by amlops")).result()
        created = self.get(name)
        if created is None or created.status.lower() != "succeeded":
            raise AmlopsError(f"online endpoint {name} ended {created.status if created else 'missing'}; see it in "
                              "Azure ML studio (Endpoints)")
        return created

    def create_deployment(self, endpoint: str, spec: DeploymentSpec) -> None:
        from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment

        check_name("deployment", spec.name)
        deployment = ManagedOnlineDeployment(
            name=spec.name, endpoint_name=endpoint, model=f"azureml:{spec.model.name}:{spec.model.version}",
            code_configuration=CodeConfiguration(code=str(spec.scoring_folder), scoring_script=spec.entry_script),
            environment=Environment(image=BASE_IMAGE, conda_file=conda_environment(spec.scoring_folder)),
            instance_type=spec.instance_type, instance_count=spec.instance_count)
        with translated(f"deployment {spec.name} of online endpoint {endpoint}"):
            result = self._client.online_deployments.begin_create_or_update(deployment).result()
        state = (getattr(result, "provisioning_state", None) or "").lower()
        if state and state != "succeeded":
            raise AmlopsError(f"deployment {spec.name} of online endpoint {endpoint} ended {state}; "
                              f"`az ml online-deployment get-logs -e {endpoint} -n {spec.name}` shows why")

    def set_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None) -> Endpoint:
        self._set_traffic(endpoint, traffic, mirror, wait=True)
        updated = self.get(endpoint)
        assert updated is not None
        return updated

    def request_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        self._set_traffic(endpoint, traffic, {}, wait=False)

    def _set_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None, wait: bool) -> None:
        with translated(f"the traffic of online endpoint {endpoint}"):
            current = self._client.online_endpoints.get(endpoint)
            current.traffic = dict(traffic)
            current.mirror_traffic = dict(mirror or {})
            poller = self._client.online_endpoints.begin_create_or_update(current)  # the PUT is sent here
            if wait:
                poller.result()  # minutes on a managed endpoint

    def delete_deployment(self, endpoint: str, deployment: str) -> None:
        self._delete_deployment(endpoint, deployment, wait=True)

    def request_deployment_delete(self, endpoint: str, deployment: str) -> None:
        self._delete_deployment(endpoint, deployment, wait=False)

    def _delete_deployment(self, endpoint: str, deployment: str, wait: bool) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with translated(f"deployment {deployment} of online endpoint {endpoint}"):
            try:
                poller = self._client.online_deployments.begin_delete(name=deployment, endpoint_name=endpoint)
                if wait:
                    poller.result()
            except ResourceNotFoundError:
                pass

    def delete(self, name: str) -> None:
        with translated(f"online endpoint {name}"):
            self._client.online_endpoints.begin_delete(name=name).result()


def _endpoint(endpoint: Any, deployments: list[Any]) -> Endpoint:
    rows = tuple(EndpointDeployment(
        d.name, _model_ref(d.model), d.provisioning_state or "", d.instance_type or "", d.instance_count or 0)
        for d in sorted(deployments, key=lambda d: d.name))
    return Endpoint(endpoint.name, endpoint.scoring_uri or "", (endpoint.auth_mode or "key").lower(),
                    {k: int(v) for k, v in (endpoint.traffic or {}).items()},
                    {k: int(v) for k, v in (endpoint.mirror_traffic or {}).items()}, rows,
                    endpoint.provisioning_state or "")


def _model_ref(model: Any) -> str:
    """`name:version` from the ARM id azure-ai-ml returns (…/models/<name>/versions/<version>)."""
    text = str(getattr(model, "id", None) or model or "")
    parts = text.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2] == "versions":
        return f"{parts[-3]}:{parts[-1]}"
    return text
