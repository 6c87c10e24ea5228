"""Registered models on Azure ML: custom_model or mlflow_model versions from a job output
(azureml://jobs/<job>/outputs/<o>) or local files, with the metrics and lineage as tags; reading them back as
ModelVersion entities."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlops.errors import AmlopsError, NotFoundError
from amlops.workspace.azure.errors import translated
from amlops.workspace.azure.runs import AzureMLUri
from amlops.workspace.entities import ModelVersion

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace


def register(ws: "AzureWorkspace", name: str, source: Any, tags: dict[str, str], properties: dict[str, str],
             run_id: str | None, model_type: str = "custom_model") -> ModelVersion:
    from azure.ai.ml.entities import Model

    path = _model_path(source)
    if not path.startswith("azureml:"):
        from amlops.workspace.local.models import check_model_type

        check_model_type(model_type, Path(path))
    if run_id:  # the lineage, also where the service keeps only the datastore path the job output resolved to
        tags = {"run_id": run_id, **tags}
    model = Model(name=name, path=path, type=model_type, tags={k: str(v) for k, v in tags.items()},
                  properties={k: str(v) for k, v in properties.items()}, job_name=run_id,
                  description=f"registered by amlops from {path}")
    with translated(f"registering model {name} in workspace {ws.workspace_name}"):
        return model_version(ws.ml_client.models.create_or_update(model))


def _model_path(source: Any) -> str:
    text = str(source)
    if text.startswith("azureml:"):
        return text
    if not Path(text).exists():
        raise AmlopsError(f"model files {text} not found; give a file or folder that exists, or a run's output")
    return str(Path(text).resolve())


def get(ws: "AzureWorkspace", name: str, version: int | None = None) -> ModelVersion:
    what = f"model {name}" + (f" version {version}" if version is not None else "")
    try:
        with translated(f"{what} in workspace {ws.workspace_name}"):
            if version is None:
                return model_version(ws.ml_client.models.get(name, label="latest"))
            return model_version(ws.ml_client.models.get(name, version=str(version)))
    except NotFoundError:
        raise NotFoundError(f"{what} is not registered in Azure ML workspace {ws.workspace_name}; `amlops models "
                            "list --backend azure` shows the registered models") from None


def latest(ws: "AzureWorkspace", name: str) -> ModelVersion | None:
    try:
        return get(ws, name)
    except NotFoundError:
        return None


def list_versions(ws: "AzureWorkspace", name: str | None = None) -> list[ModelVersion]:
    with translated(f"the models of workspace {ws.workspace_name}"):
        names = [name] if name else [container.name for container in ws.ml_client.models.list()]
        found = []
        for model_name in names:
            try:
                found += [model_version(m) for m in ws.ml_client.models.list(name=model_name)]
            except Exception as error:
                if getattr(error, "status_code", None) != 404:
                    raise
    return sorted(found, key=lambda m: (m.name, m.version))


def download(ws: "AzureWorkspace", model: ModelVersion, destination: Path) -> Path:
    """The model's files under destination/<name>/ (laid out as AZUREML_MODEL_DIR is in a deployment)."""
    target = Path(destination)
    target.mkdir(parents=True, exist_ok=True)
    with translated(f"downloading model {model.ref} from workspace {ws.workspace_name}"):
        ws.ml_client.models.download(model.name, version=str(model.version), download_path=str(target))
    folder = target / model.name
    if not folder.exists():
        raise AmlopsError(f"model {model.ref} downloaded nothing into {target}; check that its files exist in the "
                          "workspace's storage")
    return folder


def model_version(model: Any) -> ModelVersion:
    try:
        version = int(model.version)
    except (TypeError, ValueError):
        raise AmlopsError(f"model {model.name} version {model.version} is not numeric; amlops compares numbered "
                          "versions") from None
    created = getattr(getattr(model, "creation_context", None), "created_at", None)
    tags = dict(model.tags or {})
    # the service stores a job output's datastore path, not the azureml://jobs/... URI it was registered from
    job = re.match(r"^azureml://jobs/([^/]+)/outputs/", model.path or "")
    run_id = getattr(model, "job_name", None) or (job.group(1) if job else tags.get("run_id"))
    return ModelVersion(name=model.name, version=version, path=AzureMLUri(model.path or ""), tags=tags,
                        properties=dict(model.properties or {}), run_id=run_id, created_at=str(created or ""),
                        type=str(getattr(model, "type", None) or "custom_model"))
