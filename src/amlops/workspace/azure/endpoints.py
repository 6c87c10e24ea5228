"""publishEndpoint: a published pipeline deployed under a batch endpoint as a pipeline component deployment,
the v2 successor of SDK v1's published pipelines (invoke it with a POST to the endpoint's scoring URI)."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import TYPE_CHECKING

from amlops.workspace.azure.errors import translated
from amlops.workspace.azure.pipelines import TAG_COMPUTE, AzurePublishedPipeline, compute_name, get_component

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace


def endpoint_name(pipeline_name: str, workspace_id: str) -> str:
    """Batch endpoint names are 3-32 letters, digits and hyphens starting with a letter, and unique in the Azure
    region (they make the scoring URI's host): the pipeline's name plus a hash of the workspace's id, the same
    for every publish to this workspace and different in any other."""
    text = re.sub(r"[^a-z0-9-]+", "-", pipeline_name.lower()).strip("-")
    text = text if text[:1].isalpha() else f"p-{text}"
    suffix = hashlib.sha256(workspace_id.lower().encode()).hexdigest()[:8]
    return f"{text[:23].rstrip('-')}-{suffix}"


def deployment_name(version: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"v{version}".lower()).strip("-")[:32]


def deploy_pipeline_endpoint(ws: "AzureWorkspace", published: AzurePublishedPipeline) -> AzurePublishedPipeline:
    from azure.ai.ml.entities import BatchEndpoint, PipelineComponentBatchDeployment

    component = get_component(ws, published.name, published.version)
    workspace_id = (f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/"
                    f"Microsoft.MachineLearningServices/workspaces/{ws.workspace_name}")
    name, deployment = endpoint_name(published.name, workspace_id), deployment_name(published.version)
    operations = ws.ml_client
    with translated(f"batch endpoint {name} in workspace {ws.workspace_name}"):
        endpoint = operations.batch_endpoints.begin_create_or_update(
            BatchEndpoint(name=name, description=f"runs the published pipeline {published.name}")).result()
    compute = (component.tags or {}).get(TAG_COMPUTE)
    settings = {"default_compute": compute_name(compute)} if compute else {}
    with translated(f"deployment {deployment} of batch endpoint {name}"):
        operations.batch_deployments.begin_create_or_update(PipelineComponentBatchDeployment(
            name=deployment, endpoint_name=name, component=component.id, settings=settings,
            description=f"{published.name}:{published.version}")).result()
        endpoint.defaults.deployment_name = deployment
        endpoint = operations.batch_endpoints.begin_create_or_update(endpoint).result()
    return dataclasses.replace(published, endpoint_name=name, endpoint_uri=endpoint.scoring_uri,
                               deployment_name=deployment)
