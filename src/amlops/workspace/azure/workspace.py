"""The Azure ML workspace adapter: the Workspace port on azure-ai-ml (SDK v2).

Imported lazily (by `api.open_workspace`): `import azure.ai.ml` costs seconds, and local work never pays it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from amlops.errors import AmlopsError
from amlops.workspace.azure.cloud import AzureCloud, make_credential, resolve_cloud
from amlops.workspace.entities import ModelVersion, PublishedPipeline, Run


class AzureWorkspace:
    """An Azure ML workspace. `credential` None: explicit service principal values, else DefaultAzureCredential.

    `transport` (an azure-core HttpTransport) and `client_kwargs` reach every azure SDK client this workspace
    builds, and `client_kwargs` is what other code (the ACI deployer) passes to the clients it builds.
    """

    kind = "azure"

    def __init__(self, subscription_id: str | None = None, resource_group: str | None = None,
                 workspace_name: str | None = None, credential: Any = None, *, cloud: str | AzureCloud | None = None,
                 tenant_id: str | None = None, client_id: str | None = None, client_secret: str | None = None,
                 transport: Any = None, client_kwargs: dict[str, Any] | None = None,
                 poll_interval_s: float = 10.0):
        missing = [flag for flag, value in (("--subscription-id", subscription_id),
                                            ("--resource-group", resource_group),
                                            ("--workspace-name", workspace_name)) if not value]
        if missing:
            raise AmlopsError(f"the azure backend needs {', '.join(missing)} (or AZURE_SUBSCRIPTION_ID, "
                              "AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME)")
        self.subscription_id: str = subscription_id
        self.resource_group: str = resource_group
        self.workspace_name: str = workspace_name
        self.cloud: AzureCloud = resolve_cloud(cloud)
        self.credential = credential or make_credential(self.cloud, tenant_id, client_id, client_secret)
        self.transport = transport
        self._extra_kwargs = dict(client_kwargs or {})
        self.poll_interval_s = poll_interval_s
        self._ml_client = None

    def __repr__(self) -> str:
        return (f"AzureWorkspace(subscription_id={self.subscription_id!r}, resource_group={self.resource_group!r}, "
                f"workspace_name={self.workspace_name!r}, cloud={self.cloud.name!r})")

    # what other azure clients need (the ACI deployer)

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any azure-core based client: the injected transport and retry settings."""
        kwargs = dict(self._extra_kwargs)
        if self.transport is not None:
            kwargs["transport"] = self.transport
        return kwargs

    @property
    def ml_client(self) -> Any:
        if self._ml_client is None:
            from amlops.workspace.azure.client import build_ml_client

            self._ml_client = build_ml_client(self)
        return self._ml_client

    # pipelines

    def publish_pipeline(self, pipeline_file: Path, name: str | None = None, version: str | None = None,
                         publish_endpoint: bool = False) -> PublishedPipeline:
        """Validate (ours, then azure-ai-ml's), register the components as `version` and the pipeline as a
        pipeline component; with publish_endpoint also deploy it under a batch endpoint."""
        from amlops.workspace.azure import pipelines

        return pipelines.publish(self, Path(pipeline_file), name, version, publish_endpoint)

    def get_pipeline(self, name: str, version: str | None = None) -> PublishedPipeline:
        from amlops.workspace.azure import pipelines

        return pipelines.get(self, name, version)

    def list_pipelines(self) -> list[PublishedPipeline]:
        from amlops.workspace.azure import pipelines

        return pipelines.list_all(self)

    # runs

    def submit_run(self, pipeline: PublishedPipeline, overrides: dict[str, str], experiment: str | None,
                   tags: dict[str, str], timeout_s: float | None, reuse: bool, on_event=None,
                   wait: bool = True) -> Run:
        from amlops.workspace.azure import runs

        return runs.submit(self, pipeline, overrides, experiment, tags, timeout_s, reuse, on_event, wait)

    def get_run(self, run_id: str) -> Run:
        from amlops.workspace.azure import runs

        return runs.get(self, run_id)

    def list_runs(self, limit: int = 20) -> list[Run]:
        from amlops.workspace.azure import runs

        return runs.list_recent(self, limit)

    def run_output(self, run: Run, output: str) -> Any:
        """`azureml://jobs/<job>/outputs/<output>` (a str): register_model takes it as the model's path."""
        from amlops.workspace.azure import runs

        return runs.output_uri(run, output)

    def run_metrics(self, run: Run, output: str) -> dict:
        from amlops.workspace.azure import runs

        return runs.output_metrics(self, run.id, output)

    # models

    def register_model(self, name: str, source: Any, tags: dict[str, str], properties: dict[str, str],
                       run_id: str | None = None, model_type: str = "custom_model") -> ModelVersion:
        """A custom_model or mlflow_model version from a job output URI (or local files), the metrics and
        lineage as tags."""
        from amlops.workspace.azure import models

        return models.register(self, name, source, tags, properties, run_id, model_type)

    def get_model(self, name: str, version: int | None = None) -> ModelVersion:
        from amlops.workspace.azure import models

        return models.get(self, name, version)

    def latest_model(self, name: str) -> ModelVersion | None:
        from amlops.workspace.azure import models

        return models.latest(self, name)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        from amlops.workspace.azure import models

        return models.list_versions(self, name)

    # datastores

    def upload_to_datastore(self, datastore: str, file: Path, path: str | None = None, *,
                            container: str = "trainingdata", storage_account: str | None = None) -> str:
        """Upload to a blob container (default `trainingdata` in the workspace's storage account) and register an
        identity-based AzureBlobDatastore for it; returns azureml://datastores/<datastore>/paths/<path>."""
        from amlops.workspace.azure import storage

        return storage.upload(self, datastore, Path(file), path, container, storage_account)

    # what the ACI deployer needs

    def location(self) -> str:
        """The workspace's Azure region, e.g. 'westeurope'."""
        from amlops.workspace.azure.errors import translated

        with translated(f"workspace {self.workspace_name}"):
            return self.ml_client.workspaces.get(self.workspace_name).location

    def default_storage(self) -> tuple[str, str]:
        """(account name, blob endpoint URL) of the storage account behind the workspace's default datastore."""
        from amlops.workspace.azure.errors import translated

        with translated(f"the default datastore of workspace {self.workspace_name}"):
            datastore = self.ml_client.datastores.get_default()
        return datastore.account_name, _blob_endpoint(datastore)

    def linked_resources(self) -> dict[str, str | None]:
        """Resource ids of the container registry and key vault linked to the workspace."""
        from amlops.workspace.azure.errors import translated

        with translated(f"workspace {self.workspace_name}"):
            workspace = self.ml_client.workspaces.get(self.workspace_name)
        return {"container_registry": workspace.container_registry, "key_vault": workspace.key_vault}

    def download_model(self, model: ModelVersion, destination: Path) -> Path:
        """The files of a registered model version, downloaded under `destination`; returns the folder that holds
        them as AZUREML_MODEL_DIR does in an Azure ML deployment (`destination/<name>/`, e.g. `.../model/model.txt`
        for a model registered from a folder named `model`)."""
        from amlops.workspace.azure import models

        return models.download(self, model, Path(destination))


def _blob_endpoint(datastore: Any) -> str:
    protocol = getattr(datastore, "protocol", None) or "https"
    return f"{protocol}://{datastore.account_name}.blob.{datastore.endpoint}/"
