"""The task entrypoints. Each takes a TaskContext, calls the Python API and returns its message.

The API (and through it azure-ai-ml) is imported inside each entrypoint, so a task pays only for what
it uses: AmlSmokeTest never imports azure.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amlops import names
from amlops.devops import endpoint
from amlops.devops.junit import write_junit
from amlops.devops.runtime import TaskContext, TaskFailed
from amlops.devops.summary import latency_table, metrics_table, properties, table
from amlops.errors import AmlopsError
from amlops.smoke import parse_expected

_SECRET_INPUTS = {"AmlSmokeTest": ("scoringKey",)}


def secret_inputs(task_name: str) -> tuple[str, ...]:
    """Inputs whose values are secrets (masked and removed from the environment like credentials)."""
    return _SECRET_INPUTS.get(task_name, ())


# -- shared ------------------------------------------------------------------------------------------
def open_workspace(ctx: TaskContext) -> Any:
    """The workspace the `target` input names: the embedded local one, or Azure ML via the connection."""
    from amlops import api

    if ctx.inputs["target"] == "local":
        folder = ctx.text("localWorkspace") or str(ctx.temp_dir / "amlops-workspace")
        path = Path(ctx.working_dir, folder)
        ctx.log.info(f"workspace: local, {path}")
        return api.open_workspace("local", local_path=path)
    connection = endpoint.read_connection(ctx.text("azureSubscription"), ctx.env)
    credential = endpoint.make_credential(connection, ctx.env)
    cloud = connection.environment
    if connection.cloud is not None and not connection.cloud.known_to_azure_ai_ml:
        cloud = f"{cloud} at {connection.resource_manager}"
    ctx.log.info(f"workspace: {ctx.text('workspaceName')} in resource group {ctx.text('resourceGroup')}, "
                 f"subscription {connection.subscription_name or connection.subscription_id} "
                 f"({cloud}, {connection.scheme})")
    return api.open_workspace("azure", subscription_id=connection.subscription_id,
                              resource_group=ctx.text("resourceGroup"), workspace_name=ctx.text("workspaceName"),
                              credential=credential, cloud=connection.cloud or connection.environment)


def _no_macro(ctx: TaskContext, name: str) -> str | None:
    """An optional text input, or None when empty or still an unexpanded `$(variable)`."""
    value = ctx.text(name)
    return None if not value or "$(" in value else value


def check_names(ctx: TaskContext, rules: dict[str, names.NameRule]) -> None:
    """Hold each name input to its rule before anything is opened or written; an empty optional input (or an
    unexpanded `$(variable)`) means the default and is not checked."""
    for name, rule in rules.items():
        value = _no_macro(ctx, name)
        if value is not None:
            names.check(rule, value, f"input '{name}'")


def parse_parameters(text: str) -> dict[str, str]:
    """`key=value` lines (blank lines and `#` comments ignored) -> dict; AmlopsError names a bad line."""
    parameters: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise AmlopsError(f"input 'parameters' line {number} is not key=value: '{line}'; "
                              "write one key=value per line")
        parameters[key.strip()] = value.strip()
    return parameters


# -- AmlPublishPipeline ------------------------------------------------------------------------------
def publish_pipeline(ctx: TaskContext) -> str:
    from amlops import api

    check_names(ctx, {"pipelineName": names.PIPELINE, "pipelineVersion": names.PIPELINE_VERSION})
    pipeline_file = ctx.existing_path("pipelineFile")
    publish_endpoint = bool(ctx.inputs["publishEndpoint"])
    if publish_endpoint and ctx.inputs["target"] == "local":
        ctx.log.warning("publishEndpoint applies to target azure only; ignored for the local workspace")
        publish_endpoint = False
    workspace = open_workspace(ctx)
    ctx.log.setprogress(20, "validating the pipeline")
    published = api.publish(workspace, pipeline_file, name=_no_macro(ctx, "pipelineName"),
                            version=_no_macro(ctx, "pipelineVersion"), publish_endpoint=publish_endpoint)
    ctx.output("pipelineId", published.id)
    ctx.output("pipelineName", published.name)
    ctx.output("pipelineVersion", published.version)
    ctx.summary.add("Published pipeline", properties({
        "name": published.name, "version": published.version, "id": published.id,
        "source": published.source, "created": published.created_at}))
    return f"published pipeline {published.name} version {published.version}"


# -- AmlRunPipeline ----------------------------------------------------------------------------------
def run_pipeline(ctx: TaskContext) -> str:
    from amlops import api
    from amlops.gate import DEFAULT_MIN_IMPROVEMENT, Gate

    check_names(ctx, {"pipelineName": names.PIPELINE, "pipelineVersion": names.PIPELINE_VERSION,
                      "experimentName": names.EXPERIMENT, "modelName": names.MODEL, "modelOutput": names.OUTPUT,
                      "metricsOutput": names.OUTPUT})
    overrides = parse_parameters(ctx.text("parameters"))
    gate = Gate(enabled=bool(ctx.inputs["runEvaluation"]), metric=ctx.text("evaluationMetric") or "auc",
                higher_is_better=ctx.inputs["metricDirection"] != "lower",
                min_improvement=DEFAULT_MIN_IMPROVEMENT if ctx.inputs["minImprovement"] is None
                else ctx.inputs["minImprovement"])
    minutes = ctx.inputs["timeoutMinutes"]
    if minutes is not None and minutes <= 0:
        raise AmlopsError(f"input 'timeoutMinutes' must be at least 1, got {minutes}")
    wait = _wait(ctx)
    workspace = open_workspace(ctx)
    existing = _no_macro(ctx, "runId")
    if existing:
        run = workspace.get_run(existing)
        if not run.is_terminal:
            raise AmlopsError(f"input 'runId': run {run.id} is still {run.status}; wait for it to end first (for "
                              "example AzureMLJobWaitTask@1 in a `pool: server` job), or leave runId empty to submit")
        ctx.log.info(f"gating existing run {run.id} ({run.status})")
    else:
        ctx.log.setprogress(5, "submitting the pipeline run")
        run = api.submit(workspace, ctx.text("pipelineName"), version=_no_macro(ctx, "pipelineVersion"),
                         overrides=overrides, experiment=ctx.text("experimentName") or None,
                         tags=ctx.lineage_tags(), timeout_s=minutes * 60 if minutes else None, reuse=True,
                         on_progress=ctx.log.info, wait=wait)
        if not wait:
            _report_run(ctx, run, {})
            ctx.output("modelRegistered", False)
            return f"submitted pipeline run {run.id} ({run.status}); not waiting for it (input 'wait' is off)"
    metrics_output = ctx.text("metricsOutput") or api.DEFAULT_METRICS_OUTPUT
    if run.status != "Completed":
        _report_run(ctx, run, dict(run.metrics or {}))
        raise TaskFailed(f"pipeline run {run.id} ended {run.status}: {run.error or 'see the step logs above'}")
    _report_run(ctx, run, api.run_metrics(workspace, run, metrics_output))
    ctx.log.setprogress(85, "evaluating and registering the model")
    decision = api.register_if_better(workspace, run, model_name=ctx.text("modelName"), gate=gate,
                                      model_output=ctx.text("modelOutput") or "model", tags=ctx.lineage_tags(),
                                      metrics_output=metrics_output)
    return _report_decision(ctx, decision)


def _wait(ctx: TaskContext) -> bool:
    if ctx.inputs["wait"] or ctx.inputs["target"] != "local":
        return bool(ctx.inputs["wait"])
    ctx.log.warning("wait: false applies to target azure only; the local workspace runs the pipeline on this agent, "
                    "so the task waits for it")
    return True


def _report_run(ctx: TaskContext, run: Any, metrics: dict) -> None:
    ctx.output("runId", run.id)
    ctx.output("runStatus", run.status)
    ctx.output("metrics", json.dumps(metrics, sort_keys=True, default=str))
    ctx.summary.add("Pipeline run", properties({
        "run": run.id, "pipeline": f"{run.pipeline_name} {run.pipeline_version}", "experiment": run.experiment,
        "status": run.status, "started": run.created_at, "ended": run.ended_at, "error": run.error}))
    if run.steps:
        ctx.summary.add("Steps", table(("step", "status", "reused from"),
                                       ((s.name, s.status, s.reused_from) for s in run.steps)))
    ctx.summary.add("Metrics", metrics_table(metrics))


def _report_decision(ctx: TaskContext, decision: Any) -> str:
    model = decision.model
    ctx.output("modelName", model.name if model else ctx.text("modelName"))
    ctx.output("modelVersion", model.version if model else "")
    ctx.output("modelRegistered", bool(decision.registered))
    ctx.log.info(decision.message)
    rows = {"gate": decision.message, "metric": decision.metric, "candidate": decision.candidate,
            "baseline": decision.baseline, "registered": "yes" if decision.registered else "no"}
    if model:
        rows["model"] = f"{model.name}:{model.version}"
    ctx.summary.add("Model", properties(rows))
    if decision.registered and model:
        return f"registered model {model.name} version {model.version}"
    return f"model not registered: {decision.message}"


# -- AmlDeployAci ------------------------------------------------------------------------------------
def deploy_aci(ctx: TaskContext) -> str:
    from amlops import api

    check_names(ctx, {"modelName": names.MODEL, "deploymentName": names.DEPLOYMENT})
    version = _model_version(ctx.text("modelVersion"))
    folder = ctx.existing_path("scoringFolder", kind="folder")
    entry_script = ctx.text("entryScript") or "score.py"
    if not (folder / entry_script).is_file():
        raise AmlopsError(f"entry script {entry_script} not found in {folder}; check the entryScript and "
                          "scoringFolder inputs")
    workspace = open_workspace(ctx)
    ctx.log.setprogress(10, "deploying")
    deployment = api.deploy(
        workspace, model_name=ctx.text("modelName"), model_version=version,
        deployment_name=ctx.text("deploymentName"), scoring_folder=folder, entry_script=entry_script,
        cpu_cores=ctx.inputs["cpuCores"] or 1.0, memory_gb=ctx.inputs["memoryGb"] or 1.5,
        auth_enabled=bool(ctx.inputs["authEnabled"]), dns_name_label=ctx.text("dnsNameLabel") or None,
        force=bool(ctx.inputs["forceRedeploy"]), location=ctx.text("location") or None)
    key = getattr(deployment, "key", None) or ""
    ctx.log.setsecret(key)
    ctx.output("deploymentName", deployment.name)
    ctx.output("scoringUri", deployment.scoring_uri)
    ctx.output("scoringKey", key, secret=True)
    ctx.summary.add("Deployment", properties({
        "deployment": deployment.name, "model": f"{deployment.model_name}:{deployment.model_version}",
        "scoring URI": deployment.scoring_uri, "status": deployment.status,
        "authentication": "key" if key else "none", "created": deployment.created_at}))
    if deployment.error:
        raise TaskFailed(f"deployment {deployment.name} failed: {deployment.error}")
    return f"deployed {deployment.model_name}:{deployment.model_version} as {deployment.name} at " \
           f"{deployment.scoring_uri}"


def _model_version(text: str) -> int | None:
    if not text or "$(" in text:
        return None
    return names.model_version(text, "input 'modelVersion'")


# -- AmlSmokeTest ------------------------------------------------------------------------------------
def smoke_test(ctx: TaskContext) -> str:
    from amlops import api

    request_file = ctx.existing_path("requestFile")
    expected = parse_expected(ctx.text("expectedValues"), "input 'expectedValues'")
    count = ctx.inputs["requestCount"]
    timeout = ctx.inputs["readinessTimeoutSeconds"]
    if count is not None and count < 1:
        raise AmlopsError(f"input 'requestCount' must be at least 1, got {count}")
    if timeout is not None and timeout < 0:
        raise AmlopsError(f"input 'readinessTimeoutSeconds' must be 0 or more, got {timeout}")
    budget = ctx.inputs["latencyBudgetMs"]
    ctx.log.setprogress(10, "calling the scoring service")
    tolerance = ctx.inputs["tolerance"]
    report = api.smoke_test(ctx.text("scoringUri"), request_file=request_file, key=ctx.text("scoringKey") or None,
                            expected=expected, tolerance=0.01 if tolerance is None else tolerance,
                            count=count or 20, latency_budget_ms=budget,
                            readiness_timeout_s=300 if timeout is None else timeout)
    text = getattr(report, "text", None)
    if callable(text):
        ctx.log.info(text())
    latency = dict(report.latency_ms or {})
    ctx.output("smokeTestPassed", bool(report.passed))
    for name in ("p50", "p95", "p99"):
        ctx.output(f"latency{name.upper()}Ms", _ms(latency.get(name)))
    ctx.summary.add("Smoke test", properties({
        "scoring URI": ctx.text("scoringUri"), "result": "passed" if report.passed else "FAILED",
        "requests": report.requests, "message": report.message}))
    checks = getattr(report, "checks", ())
    if checks:
        ctx.summary.add("Checks", table(("check", "result", "detail"),
                                        ((name, "pass" if ok else "FAIL", detail) for name, ok, detail in checks)))
        _publish_checks(ctx, checks)
    ctx.summary.add("Latency", latency_table(latency, budget))
    if not report.passed:
        message = report.message
        raise TaskFailed(message if message.startswith("smoke test failed") else f"smoke test failed: {message}")
    return f"smoke test passed: {report.requests} requests, p95 {_ms(latency.get('p95'))} ms"


def _publish_checks(ctx: TaskContext, checks: Any) -> None:
    """The checks as a test run in the Tests tab (JUnit XML, `results.publish`)."""
    try:
        path = write_junit(ctx.temp_dir, "amlops smoke test", checks)
    except OSError as error:
        ctx.log.warning(f"could not write the smoke-test results: {error}")
        return
    ctx.log.command("results.publish", {"type": "JUnit", "runTitle": f"Smoke test {ctx.text('scoringUri')}",
                                        "resultFiles": str(path), "mergeResults": False,
                                        "publishRunAttachments": True})


# -- AmlDeployOnlineEndpoint -------------------------------------------------------------------------
def deploy_online_endpoint(ctx: TaskContext) -> str:
    from amlops import api
    from amlops.deploy.online_endpoint.rollout import parse_traffic_steps

    folder = ctx.existing_path("scoringFolder", kind="folder")
    request_file = ctx.existing_path("requestFile")
    azure = ctx.inputs["target"] == "azure"
    workspace = open_workspace(ctx)
    ctx.log.setprogress(10, "rolling out")
    result = api.deploy_online_endpoint(
        workspace, endpoint_name=ctx.text("endpointName"), deployment_name=ctx.text("deploymentName"),
        model_name=ctx.text("modelName"), model_version=_model_version(ctx.text("modelVersion")),
        scoring_folder=folder, request_file=request_file, entry_script=ctx.text("entryScript") or "score.py",
        instance_type=ctx.text("instanceType") or "Standard_DS3_v2",
        instance_count=_whole(ctx, "instanceCount", 1) if azure else 1,
        traffic_steps=parse_traffic_steps(ctx.text("trafficSteps"), "input 'trafficSteps'"),
        mirror_percent=_whole(ctx, "mirrorPercent", 0) if azure else 0,
        delete_previous=bool(ctx.inputs["deletePrevious"]), auth_mode=ctx.text("authMode") or "key",
        expected=parse_expected(ctx.text("expectedValues"), "input 'expectedValues'"),
        smoke_requests=_whole(ctx, "smokeRequests", 10),
        readiness_timeout_s=ctx.inputs["readinessTimeoutSeconds"] or 600, on_info=ctx.log.info)
    ctx.log.setsecret(result.key or "")
    ctx.output("scoringUri", result.scoring_uri)
    ctx.output("deploymentName", result.deployment)
    ctx.output("previousDeployment", result.previous or "")
    ctx.output("scoringKey", result.key or "", secret=True)
    ctx.summary.add("Online endpoint", properties({
        "endpoint": result.endpoint, "scoring URI": result.scoring_uri, "new deployment": result.deployment,
        "previous deployment": result.previous or "(none)",
        "traffic": ", ".join(f"{k} {v}%" for k, v in sorted(result.traffic.items()) if v),
        "deleted": ", ".join(result.deleted) or "(none)"}))
    ctx.summary.add("Smoke test", latency_table(dict(result.smoke.latency_ms or {}), None))
    return f"endpoint {result.endpoint} serves {result.deployment} at {result.scoring_uri}"


def _whole(ctx: TaskContext, name: str, default: int) -> int:
    value = ctx.inputs[name]
    if value is None:
        return default
    if value != int(value):
        raise AmlopsError(f"input '{name}' must be a whole number, got {value:g}")
    return int(value)


def _ms(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f}"


TASKS: dict[str, Callable[[TaskContext], str]] = {
    "AmlPublishPipeline": publish_pipeline,
    "AmlRunPipeline": run_pipeline,
    "AmlDeployAci": deploy_aci,
    "AmlSmokeTest": smoke_test,
    "AmlDeployOnlineEndpoint": deploy_online_endpoint,
}
