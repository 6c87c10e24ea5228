"""publishEndpoint: a published pipeline deployed under a batch endpoint as a pipeline component deployment,
the v2 successor of SDK v1's published pipelines (invoke it with a POST to the endpoint's scoring URI)."""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from amlops.workspace.azure.errors import translated
from amlops.workspace.azure.pipelines import TAG_COMPUTE, AzurePublishedPipeline, get_component

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace


def endpoint_name(pipeline_name: str) -> str:
    """Batch endpoint names: 3-32 letters, digits and hyphens, starting with a letter."""
    text = re.sub(r"[^a-z0-9-]+", "-", pipeline_name.lower()).strip("-")
    text = text if text[:1].isalpha() else f"p-{text}"
    return text[:32].rstrip("-").ljust(3, "0")


def deployment_name(version: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"v{version}".lower()).strip("-")[:32]


def deploy_pipeline_endpoint(ws: "AzureWorkspace", published: AzurePublishedPipeline) -> AzurePublishedPipeline:
    from azure.ai.ml.entities import BatchEndpoint, PipelineComponentBatchDeployment

    component = get_component(ws, published.name, published.version)
    name, deployment = endpoint_name(published.name), deployment_name(published.version)
    operations = ws.ml_client
    with translated(f"batch endpoint {name} in workspace {ws.workspace_name}"):
        endpoint = operations.batch_endpoints.begin_create_or_update(
            BatchEndpoint(name=name, description=f"runs the published pipeline {published.name}")).result()
    settings = {"default_compute": component.tags[TAG_COMPUTE]} if (component.tags or {}).get(TAG_COMPUTE) else {}
    with translated(f"deployment {deployment} of batch endpoint {name}"):
        operations.batch_deployments.begin_create_or_update(PipelineComponentBatchDeployment(
            name=deployment, endpoint_name=name, component=component.id, settings=settings,
            description=f"{published.name}:{published.version}")).result()
        endpoint.defaults.deployment_name = deployment
        endpoint = operations.batch_endpoints.begin_create_or_update(endpoint).result()
    return dataclasses.replace(published, endpoint_name=name, endpoint_uri=endpoint.scoring_uri,
                               deployment_name=deployment)
