"""Publishing a pipeline YAML to Azure ML: its command components registered under the given version and
the pipeline itself as a versioned pipeline component (optionally deployed under a batch endpoint, the v2
successor of SDK v1's published pipelines, so it can be invoked over REST).

What the local workspace keeps in its database is kept on the pipeline component as `amlops.*` tags: the
source file, a content hash (versions are immutable: the same version is accepted again only with the
same content), the experiment name, the default compute and the YAML's input values.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from amlops.errors import AmlopsError, NotFoundError, PipelineValidationError
from amlops.pipeline.loader import load_pipeline
from amlops.pipeline.model import Pipeline, pipeline_name
from amlops.workspace.azure.errors import translated
from amlops.workspace.entities import PublishedPipeline
from amlops.workspace.local.snapshot import content_hash, snapshot_root

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace

TAG_SOURCE, TAG_HASH, TAG_EXPERIMENT = "amlops.source", "amlops.content_hash", "amlops.experiment_name"
TAG_COMPUTE, TAG_INPUTS = "amlops.default_compute", "amlops.inputs"
TAG_PRODUCERS = "amlops.producers"  # pipeline output -> [step, step output]: where a run writes it
# On the pipeline component's container: an ARM component container carries no type, so the task editor's pipeline
# picker (AmlRunPipeline's dataSourceBindings) filters the containers on this tag; no dots, which a JSONPath
# filter would read as a path (`@.properties.tags.amlops_kind`).
TAG_KIND, KIND_PIPELINE = "amlops_kind", "pipeline"
PIPELINE_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json"


@dataclass(frozen=True)
class AzurePublishedPipeline(PublishedPipeline):
    """A published pipeline on Azure ML: the pipeline component, its step components and, with
    publishEndpoint, the batch endpoint that runs it over REST."""

    component_ids: dict = field(default_factory=dict)
    endpoint_name: str | None = None
    endpoint_uri: str | None = None
    deployment_name: str | None = None


def compute_name(reference: str) -> str:
    """A compute as the YAML or a tag names it (`azureml:cpu-cluster`, `cpu-cluster` or its ARM id) -> its name.
    azure-ai-ml makes an ARM id from a plain name but keeps an `azureml:` prefix inside it
    (`.../computes/azureml:cpu-cluster`), which the service refuses."""
    return str(reference).strip().removeprefix("azureml:").rstrip("/").rsplit("/", 1)[-1]


def publish(ws: "AzureWorkspace", pipeline_file: Path, name: str | None, version: str | None,
            publish_endpoint: bool = False) -> AzurePublishedPipeline:
    pipeline = load_pipeline(pipeline_file)  # our validation first: file:line messages
    components = validate_with_azure_ai_ml(pipeline)
    name = pipeline_name(name or pipeline.name)
    digest = _pipeline_hash(pipeline)
    existing = _existing(ws, name, version, digest)
    if existing is not None:
        published = existing
    else:
        version = version or _next_version(ws, name)
        ids = {step: _register_step(ws, component, version, step, _step_hash(pipeline, step))
               for step, component in components.items()}
        published = _register_pipeline(ws, pipeline, name, version, digest, ids)
    _mark_container(ws, name)
    if publish_endpoint:
        from amlops.workspace.azure.endpoints import deploy_pipeline_endpoint

        published = deploy_pipeline_endpoint(ws, published)
    return published


def validate_with_azure_ai_ml(pipeline: Pipeline) -> dict[str, Any]:
    """azure-ai-ml's own validation: load_job of the pipeline and load_component(...)._validate() of each
    component; returns the loaded components by step."""
    from amlops.workspace.azure.client import import_azure_ai_ml

    azure_ai_ml = import_azure_ai_ml()
    problems: list[str] = []
    job = _load(lambda: azure_ai_ml.load_job(pipeline.path), pipeline.path, problems)
    components = {}
    for step_name, step in pipeline.steps.items():
        if step.component.inline:
            component = _inline_component(job, pipeline, step_name) if job is not None else None
        else:
            component = _load(lambda path=step.component.path: azure_ai_ml.load_component(path),
                              step.component.path, problems)
        if component is None:
            continue
        result = component._validate()
        if not result.passed:
            problems += [f"{step.component.path}: {field_name}: {message} (azure-ai-ml)"
                         for field_name, message in result.error_messages.items()]
        components[step_name] = component
    if problems:
        raise PipelineValidationError(problems)
    return components


def _inline_component(job: Any, pipeline: Pipeline, step: str) -> Any:
    """A named command component made of the one azure-ai-ml built for an inline job (which it would register
    anonymously), so it is registered and versioned like the others: <pipeline>_<step>."""
    from azure.ai.ml.entities import CommandComponent

    built = job.jobs[step].component
    code = pipeline.steps[step].component.code
    return CommandComponent(name=pipeline_name(f"{pipeline.name}_{step}"), display_name=step, command=built.command,
                            code=str(code) if code else None, environment=built.environment,
                            inputs=dict(built.inputs or {}), outputs=dict(built.outputs or {}))


def _load(loader, path: Path, problems: list[str]) -> Any:
    try:
        return loader()
    except Exception as error:  # noqa: BLE001 - azure-ai-ml raises several exception types for a bad YAML
        message = " ".join(str(error).split())
        problems.append(f"{path}: azure-ai-ml cannot load it: {message[:500]}")
        return None


def _pipeline_hash(pipeline: Pipeline) -> str:
    local_inputs = {Path(spec.value) for spec in pipeline.inputs.values() if spec.is_path and _is_local(spec.value)}
    files = [path for path in pipeline.files if path not in local_inputs]
    return content_hash(files, relative_to=snapshot_root(tuple(files)))


def _is_local(value: Any) -> bool:
    return isinstance(value, str) and "://" not in value and not value.startswith("azureml:")


def _existing(ws: "AzureWorkspace", name: str, version: str | None, digest: str) -> AzurePublishedPipeline | None:
    """The already published version to reuse: the same version with the same content, or (no version given)
    the latest version when its content is the same. Different content under a given version is refused."""
    try:
        current = get_component(ws, name, version)
    except NotFoundError:
        return None
    same = (current.tags or {}).get(TAG_HASH) == digest
    if version and not same:
        raise AmlopsError(f"pipeline {name} version {version} is already published in workspace {ws.workspace_name} "
                          "with different content; publish under a new --version (versions are immutable)")
    return published_pipeline(current) if same else None


def _next_version(ws: "AzureWorkspace", name: str) -> str:
    with translated(f"the versions of pipeline {name}"):
        try:
            versions = [c.version for c in ws.ml_client.components.list(name=name)]
        except Exception as error:  # a name never published has no container
            if getattr(error, "status_code", None) == 404:
                versions = []
            else:
                raise
    numbers = [int(v) for v in versions if str(v).isdigit()]
    return str(max(numbers, default=0) + 1)


def _register_step(ws: "AzureWorkspace", component: Any, version: str, step: str, digest: str) -> str:
    """Register a step's command component as name:version, unless that version exists with the same content."""
    what = f"component {component.name} version {version} (step {step})"
    try:
        existing = get_component(ws, component.name, version)
    except NotFoundError:
        existing = None
    if existing is not None:
        if (existing.tags or {}).get(TAG_HASH) != digest:
            raise AmlopsError(f"{what} already exists in workspace {ws.workspace_name} with different content; "
                              "publish under a new --version (versions are immutable)")
        return existing.id
    component.tags = {**(component.tags or {}), TAG_HASH: digest}
    with translated(what):
        return ws.ml_client.components.create_or_update(component, version=version).id


def _step_hash(pipeline: Pipeline, step: str) -> str:
    """The content of a step's component: its YAML and its code folder, named relative to each other (not where
    the agent checked them out)."""
    component = pipeline.steps[step].component
    files = [component.path] + ([component.code] if component.code else [])
    return content_hash(files, relative_to=snapshot_root(tuple(files)))


def _register_pipeline(ws: "AzureWorkspace", pipeline: Pipeline, name: str, version: str, digest: str,
                       step_ids: dict[str, str]) -> AzurePublishedPipeline:
    from amlops.workspace.azure.client import import_azure_ai_ml

    document = yaml.safe_load(pipeline.path.read_text(encoding="utf-8"))
    spec = _pipeline_component_spec(document, pipeline, name, version, digest, step_ids)
    with tempfile.TemporaryDirectory(prefix="amlops-") as folder:
        spec_file = Path(folder) / "pipeline_component.yml"
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        component = import_azure_ai_ml().load_component(spec_file)
    result = component._validate()
    if not result.passed:
        raise PipelineValidationError([f"{pipeline.path}: as a pipeline component: {key}: {message}"
                                       for key, message in result.error_messages.items()])
    with translated(f"pipeline component {name} version {version}"):
        created = ws.ml_client.components.create_or_update(component)
    return published_pipeline(created, step_ids)


def _mark_container(ws: "AzureWorkspace", name: str) -> None:
    """Tag the pipeline's component container `amlops_kind: pipeline` (kept if it is there: a pipeline published
    before this tag existed gets it when it is published again). azure-ai-ml has no public way to update a
    container; its generated ComponentContainers client does the GET and PUT it uses itself to archive one, and a
    PUT replaces the container's tags, description and properties, so they go back as read."""
    containers = ws.ml_client.components._container_operation
    scope = {"resource_group_name": ws.resource_group, "workspace_name": ws.workspace_name}
    with translated(f"the container of pipeline {name} in workspace {ws.workspace_name}"):
        container = containers.get(name=name, **scope)
        tags = dict(container.properties.tags or {})
        if tags.get(TAG_KIND) == KIND_PIPELINE:
            return
        container.properties.tags = {**tags, TAG_KIND: KIND_PIPELINE}
        containers.create_or_update(name=name, body=container, **scope)


def _pipeline_component_spec(document: dict, pipeline: Pipeline, name: str, version: str, digest: str,
                             step_ids: dict[str, str]) -> dict:
    jobs = {step: {**_without_inline_fields(job), "component": _short_reference(step_ids[step])}
            for step, job in (document.get("jobs") or {}).items()}
    settings = document.get("settings") or {}
    compute = settings.get("default_compute")
    tags = {TAG_SOURCE: str(pipeline.path), TAG_HASH: digest, TAG_EXPERIMENT: pipeline.experiment_name,
            TAG_INPUTS: json.dumps(_input_values(pipeline), sort_keys=True),
            TAG_PRODUCERS: json.dumps(_producers(pipeline), sort_keys=True)}
    if compute:
        tags[TAG_COMPUTE] = compute_name(compute)
    return {"$schema": PIPELINE_SCHEMA, "type": "pipeline", "name": name, "version": version,
            "display_name": pipeline.display_name, "description": document.get("description") or pipeline.display_name,
            "tags": {**(document.get("tags") or {}), **tags},
            "inputs": {key: _input_definition(spec) for key, spec in pipeline.inputs.items()},
            "outputs": {key: {"type": spec.type} for key, spec in pipeline.outputs.items()},
            "jobs": jobs}


def _without_inline_fields(job: dict) -> dict:
    """An inline job's command, code and environment now live in its registered component."""
    from amlops.pipeline.inline_jobs import INLINE_FIELDS

    return {key: value for key, value in job.items() if key not in INLINE_FIELDS}


def _short_reference(arm_id: str) -> str:
    """/subscriptions/.../components/<name>/versions/<version> -> azureml:<name>:<version>"""
    name, _, version = arm_id.split("/components/", 1)[1].partition("/versions/")
    return f"azureml:{name}:{version}"


def _input_definition(spec) -> dict:
    if spec.is_path:
        return {"type": spec.type}
    definition: dict = {"type": spec.type}
    if spec.value is not None:
        definition["default"] = spec.value
    return definition


def _producers(pipeline: Pipeline) -> dict[str, list[str]]:
    """Which step writes each pipeline output: the service stores it under that step's child run, not the
    pipeline job."""
    return {binding.parent_output: [step_name, output]
            for step_name, step in pipeline.steps.items()
            for output, binding in step.outputs.items() if binding.parent_output}


def _input_values(pipeline: Pipeline) -> dict:
    """The YAML's input values a run starts from; a local file has no value on Azure (None)."""
    return {key: (None if spec.is_path and _is_local(spec.value) else spec.value)
            for key, spec in pipeline.inputs.items()}


def get_component(ws: "AzureWorkspace", name: str, version: str | None) -> Any:
    what = f"pipeline {name}" + (f" version {version}" if version else "")
    with translated(f"{what} in workspace {ws.workspace_name}"):
        if version:
            return ws.ml_client.components.get(name, version=version)
        return ws.ml_client.components.get(name, label="latest")


def get(ws: "AzureWorkspace", name: str, version: str | None) -> AzurePublishedPipeline:
    try:
        component = get_component(ws, pipeline_name(name), version)
    except NotFoundError:
        what = f"pipeline {name}" + (f" version {version}" if version else "")
        raise NotFoundError(f"{what} is not published in Azure ML workspace {ws.workspace_name}; run "
                            "`amlops publish --backend azure <pipeline.yml>` first") from None
    if getattr(component, "type", None) != "pipeline":
        raise NotFoundError(f"{component.name}:{component.version} in workspace {ws.workspace_name} is a "
                            f"{component.type} component, not a published pipeline")
    return published_pipeline(component)


def list_all(ws: "AzureWorkspace") -> list[AzurePublishedPipeline]:
    with translated(f"the components of workspace {ws.workspace_name}"):
        names = [container.name for container in ws.ml_client.components.list()]
        found = []
        for name in names:
            found += [published_pipeline(c) for c in ws.ml_client.components.list(name=name)
                      if getattr(c, "type", None) == "pipeline" and TAG_HASH in (c.tags or {})]
    return sorted(found, key=lambda p: (p.name, p.created_at))


def published_pipeline(component: Any, step_ids: dict[str, str] | None = None) -> AzurePublishedPipeline:
    tags = component.tags or {}
    created = getattr(getattr(component, "creation_context", None), "created_at", None)
    return AzurePublishedPipeline(name=component.name, version=str(component.version), id=component.id,
                                  source=tags.get(TAG_SOURCE, ""), created_at=str(created or ""),
                                  component_ids=dict(step_ids or _step_ids(component)))


def _step_ids(component: Any) -> dict[str, str]:
    """The ids of the components a registered pipeline component's steps run."""
    ids = {}
    for step, node in (getattr(component, "jobs", None) or {}).items():
        reference = getattr(node, "component", None)
        ids[step] = reference if isinstance(reference, str) else str(getattr(reference, "id", "") or "")
    return ids
