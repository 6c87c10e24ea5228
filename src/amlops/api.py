"""The Python API: what the CLI, the flow and the Azure DevOps tasks call. One implementation per step."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from amlops import names
from amlops.errors import AmlopsError
from amlops.gate import Gate, GateDecision, judge
from amlops.workspace import Workspace
from amlops.workspace.entities import Deployment, PublishedPipeline, Run

if TYPE_CHECKING:
    from amlops.workspace.azure.cloud import AzureCloud

DEFAULT_MODEL_OUTPUT = "model"
DEFAULT_METRICS_OUTPUT = "metrics"  # the output both workspaces read a run's metrics from as it ends


def open_workspace(target: str = "local", *, local_path: str | Path | None = None,
                   subscription_id: str | None = None, resource_group: str | None = None,
                   workspace_name: str | None = None, credential=None, cloud: str | AzureCloud | None = None,
                   tenant_id: str | None = None, client_id: str | None = None,
                   client_secret: str | None = None) -> Workspace:
    """The local workspace (a folder, default `.amlops/`) or an Azure ML workspace (`cloud`: AzureCloud,
    AzureChinaCloud, AzureUSGovernment, or an `AzureCloud` object for a custom cloud; default $AZURE_CLOUD or
    AzureCloud)."""
    if target == "local":
        from amlops.workspace.local.workspace import LocalWorkspace

        return LocalWorkspace(local_path)
    if target == "azure":
        try:
            from amlops.workspace.azure.workspace import AzureWorkspace
        except ImportError:
            raise AmlopsError("the azure backend needs the Azure packages; install them with "
                              "pip install 'amlops[azure]'") from None
        return AzureWorkspace(subscription_id=subscription_id, resource_group=resource_group,
                              workspace_name=workspace_name, credential=credential, cloud=cloud,
                              tenant_id=tenant_id, client_id=client_id, client_secret=client_secret)
    raise AmlopsError(f"unknown target '{target}'; use 'local' or 'azure'")


def publish(ws: Workspace, pipeline_file: str | Path, *, name: str | None = None, version: str | None = None,
            publish_endpoint: bool = False) -> PublishedPipeline:
    """Validate and snapshot a pipeline as name:version. Names follow Azure ML's rules on every backend
    (`amlops.names`); on Azure the pipeline is a component, whose name azure-ai-ml wants lowercase with '_'
    (safe-driver-training is published as safe_driver_training)."""
    names.check_optional(names.PIPELINE, name, "name")
    names.check_optional(names.PIPELINE_VERSION, version, "version")
    if publish_endpoint and ws.kind == "local":
        raise AmlopsError("publishEndpoint needs an Azure ML workspace; the local workspace has no endpoints")
    if publish_endpoint:
        return ws.publish_pipeline(Path(pipeline_file), name=name, version=version, publish_endpoint=True)
    return ws.publish_pipeline(Path(pipeline_file), name=name, version=version)


def submit(ws: Workspace, pipeline_name: str, *, version: str | None = None,
           overrides: dict[str, str] | None = None, experiment: str | None = None,
           tags: dict[str, str] | None = None, timeout_s: float | None = None, reuse: bool = True,
           on_progress: Callable[[str], None] | None = None,
           on_event: Callable[[str, str, str], None] | None = None, wait: bool = True) -> Run:
    """Run a published pipeline and wait until it ends (the returned Run says how it ended), or with wait=False
    return as soon as it is submitted (an Azure ML workspace only)."""
    names.check(names.PIPELINE, pipeline_name, "pipeline_name")
    names.check_optional(names.PIPELINE_VERSION, version, "version")
    names.check_optional(names.EXPERIMENT, experiment, "experiment")
    pipeline = ws.get_pipeline(pipeline_name, version)
    if on_event is None and on_progress is not None:
        on_event = _progress_lines(on_progress)
    if not wait:
        return ws.submit_run(pipeline, overrides or {}, experiment, tags or {}, timeout_s, reuse, on_event, wait=False)
    return ws.submit_run(pipeline, overrides or {}, experiment, tags or {}, timeout_s, reuse, on_event)


def _progress_lines(on_progress: Callable[[str], None]) -> Callable[[str, str, str], None]:
    def on_event(kind: str, step: str, text: str) -> None:
        prefix = f"[{step}] " if step else ""
        label = {"status": "status: ", "warning": "warning: "}.get(kind, "")
        on_progress(f"{prefix}{label}{text}")
    return on_event


def register_if_better(ws: Workspace, run: Run, *, model_name: str, gate: Gate = Gate(),
                       model_output: str = DEFAULT_MODEL_OUTPUT, tags: dict[str, str] | None = None,
                       model_type: str = "custom_model",
                       metrics_output: str = DEFAULT_METRICS_OUTPUT) -> GateDecision:
    """The validation gate on the metrics in `metrics_output`, then registration (as custom_model or
    mlflow_model) with the metrics and lineage as tags."""
    names.check(names.MODEL, model_name, "model_name")
    names.check(names.OUTPUT, model_output, "model_output")
    names.check(names.OUTPUT, metrics_output, "metrics_output")
    if run.status != "Completed":
        raise AmlopsError(f"run {run.id} ended {run.status}, so its model cannot be registered"
                          + (f": {run.error.splitlines()[0]}" if run.error else ""))
    metrics = run_metrics(ws, run, metrics_output)
    latest = ws.latest_model(model_name)
    verdict = judge(gate, metrics, latest)
    if not verdict.better:
        return GateDecision(False, None, gate.metric, verdict.candidate, verdict.baseline, verdict.message)
    model_tags = {**{k: str(v) for k, v in metrics.items()}, **_lineage(run), **(tags or {})}
    properties = {"gate": verdict.message, "metric": gate.metric}
    model = ws.register_model(model_name, ws.run_output(run, model_output), model_tags, properties, run.id,
                              model_type=model_type)
    return GateDecision(True, model, gate.metric, verdict.candidate, verdict.baseline,
                        f"registered {model.ref}: {verdict.message}")


def run_metrics(ws: Workspace, run: Run, metrics_output: str = DEFAULT_METRICS_OUTPUT) -> dict:
    """A completed run's metrics: read as it ended from the `metrics` output, else from `metrics_output`."""
    if metrics_output == DEFAULT_METRICS_OUTPUT:
        return dict(run.metrics or {})
    return ws.run_metrics(run, metrics_output)


def _lineage(run: Run) -> dict[str, str]:
    lineage = {"run_id": run.id, "pipeline": f"{run.pipeline_name}:{run.pipeline_version}",
               "experiment": run.experiment}
    lineage.update({k: str(v) for k, v in run.tags.items()})
    return lineage


def deploy(ws: Workspace, *, model_name: str, model_version: int | None, deployment_name: str,
           scoring_folder: str | Path, entry_script: str = "score.py", cpu_cores: float = 1.0,
           memory_gb: float = 1.5, auth_enabled: bool = True, dns_name_label: str | None = None,
           force: bool = False, location: str | None = None, workers: int | None = None) -> Deployment:
    """Serve a registered model version: the local inference server (`workers` processes, default one per
    core), or Azure Container Instances."""
    names.check(names.MODEL, model_name, "model_name")
    if model_version is not None:
        names.model_version(model_version, "model_version")
    names.check(names.DEPLOYMENT, deployment_name, "deployment_name")
    model = ws.get_model(model_name, model_version)
    if ws.kind == "local":
        from amlops.deploy.local.target import deploy_local

        return deploy_local(ws, model, deployment_name, Path(scoring_folder), entry_script, workers=workers)
    from amlops.deploy.aci.target import deploy_aci

    return deploy_aci(ws, model, deployment_name, Path(scoring_folder), entry_script, cpu_cores=cpu_cores,
                      memory_gb=memory_gb, auth_enabled=auth_enabled, dns_name_label=dns_name_label, force=force,
                      location=location)


def smoke_test(scoring_uri: str, *, request_file: str | Path, key: str | None = None,
               expected: list[float] | None = None, tolerance: float = 0.01, count: int = 20,
               latency_budget_ms: float | None = None, readiness_timeout_s: float = 300):
    from amlops.smoke import SmokeTest

    return SmokeTest(scoring_uri, Path(request_file), key=key, expected=expected, tolerance=tolerance,
                     count=count, latency_budget_ms=latency_budget_ms,
                     readiness_timeout_s=readiness_timeout_s).run()


def online_endpoints(ws: Workspace, on_info: Callable[[str], None] = print):
    """The online endpoints of a workspace: local (inference servers behind Caddy) or Azure ML managed ones."""
    if ws.kind == "local":
        from amlops.deploy.online_endpoint.local import LocalEndpoints

        return LocalEndpoints(ws, on_info)
    from amlops.deploy.online_endpoint.azure import AzureEndpoints

    return AzureEndpoints(ws, on_info)


def deploy_online_endpoint(ws: Workspace, *, endpoint_name: str, deployment_name: str, model_name: str,
                           model_version: int | None, scoring_folder: str | Path, request_file: str | Path,
                           entry_script: str = "score.py", instance_type: str = "Standard_DS3_v2",
                           instance_count: int = 1, traffic_steps: tuple[int, ...] = (100,), mirror_percent: int = 0,
                           delete_previous: bool = False, auth_mode: str = "key", expected: list[float] | None = None,
                           tolerance: float = 0.01, smoke_requests: int = 10, readiness_timeout_s: float = 600,
                           on_info: Callable[[str], None] = print):
    """Blue/green: a new deployment of the model on the endpoint (created if missing), smoke-tested alone, then
    given the traffic (in steps, checked after each); any failure gives the traffic back and deletes it."""
    from amlops.deploy.online_endpoint.model import DeploymentSpec, check_name
    from amlops.deploy.online_endpoint.rollout import RolloutPlan, check_plan, rollout

    folder = Path(scoring_folder)
    if not (folder / entry_script).is_file():
        raise AmlopsError(f"entry script {folder / entry_script} not found; pass the scoring folder holding "
                          f"{entry_script} (and its requirements.txt)")
    if instance_count < 1:
        raise AmlopsError(f"instance count must be at least 1, got {instance_count}")
    plan = RolloutPlan(Path(request_file), tuple(traffic_steps), mirror_percent, delete_previous, auth_mode, expected,
                       tolerance, smoke_requests, readiness_timeout_s)
    check_name("endpoint", endpoint_name)
    check_name("deployment", deployment_name)
    check_plan(plan)
    from amlops.smoke import SmokeTest  # the request file is read (and checked) before anything is created

    SmokeTest("http://unused", plan.request_file)
    model = ws.get_model(model_name, model_version)
    spec = DeploymentSpec(deployment_name, model, folder, entry_script, instance_type, instance_count)
    return rollout(online_endpoints(ws, on_info), endpoint_name, spec, plan, on_info)


def rollback_online_endpoint(ws: Workspace, endpoint_name: str, to: str | None = None,
                             on_info: Callable[[str], None] = print):
    """All traffic to `to`, or, when not given, to the one other deployment of the endpoint."""
    backend = online_endpoints(ws, on_info)
    endpoint = backend.get(endpoint_name)
    if endpoint is None:
        raise AmlopsError(f"online endpoint {endpoint_name} not found; `amlops endpoints list` shows them")
    others = [d.name for d in endpoint.deployments if d.name != endpoint.live]
    if to is None and len(others) != 1:
        raise AmlopsError(f"endpoint {endpoint_name} has {len(others)} deployments besides the live one "
                          f"({', '.join(others) or 'none'}); name the one to roll back to with --to")
    target = to or others[0]
    if endpoint.deployment(target) is None:
        raise AmlopsError(f"endpoint {endpoint_name} has no deployment {target}; its deployments: "
                          f"{', '.join(d.name for d in endpoint.deployments) or 'none'}")
    return backend.set_traffic(endpoint_name, {d.name: 100 if d.name == target else 0 for d in endpoint.deployments})
