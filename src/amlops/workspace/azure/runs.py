"""Running a published pipeline on Azure ML: submit a pipeline job from the pipeline component, wait for it
by polling its status against the terminal states (with a deadline, and a cancel sent when it passes),
report each step's status as it changes, and read the metrics from the `metrics` output."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from amlops.errors import AmlopsError, NotFoundError
from amlops.pipeline.types import coerce
from amlops.workspace.azure.errors import TransientAzureError, translated
from amlops.workspace.azure.pipelines import (
    TAG_COMPUTE, TAG_EXPERIMENT, TAG_INPUTS, TAG_PRODUCERS, compute_name, get_component,
)
from amlops.workspace.entities import TERMINAL_STATUSES, PublishedPipeline, Run, StepRun
from amlops.workspace.metrics import METRICS_FILE, missing, parse_metrics

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace

METRICS_OUTPUT = "metrics"
TAG_PIPELINE = "amlops.pipeline"
CANCEL_GRACE_POLLS = 30
# a job's status that cannot be read (Azure or the network failing past the client's own retries) is read again,
# waiting twice as long each time from the poll interval up to MAX_POLL_BACKOFF_S, until the deadline or
# MAX_POLL_FAILURES failures in a row (about 15 min with the 10 s interval); then the job's cancel is requested
MAX_POLL_FAILURES = 8
MAX_POLL_BACKOFF_S = 300.0
Events = Callable[[str, str, str], None]


def status_of(job: Any) -> str:
    """A job's status as a plain string (azure-ai-ml hands out a str Enum: 'JobStatus.RUNNING' when formatted)."""
    status = getattr(job, "status", None)
    return str(getattr(status, "value", status) or "Unknown")


class AzureMLUri(str):
    """An `azureml://...` URI (a job output, a datastore path): what the azure workspace hands out where the
    local one hands out a local Path."""


def job_output_uri(job: str, output: str) -> AzureMLUri:
    return AzureMLUri(f"azureml://jobs/{job}/outputs/{output}")


def submit(ws: "AzureWorkspace", pipeline: PublishedPipeline, overrides: dict[str, str], experiment: str | None,
           tags: dict[str, str], timeout_s: float | None, reuse: bool, on_event: Events | None,
           wait: bool = True) -> Run:
    component = get_component(ws, pipeline.name, pipeline.version)
    job = _pipeline_job(component, overrides, experiment, tags, reuse)
    if job.settings.default_compute:
        require_compute(ws, job.settings.default_compute)
    with translated(f"submitting pipeline {pipeline.name}:{pipeline.version} to workspace {ws.workspace_name}"):
        submitted = ws.ml_client.jobs.create_or_update(job, experiment_name=job.experiment_name)
    emit = on_event or (lambda kind, step, text: None)
    emit("info", "", f"submitted job {submitted.name}" + (f": {submitted.studio_url}" if submitted.studio_url else ""))
    if not wait:
        return _run_entity(ws, submitted, pipeline.name, pipeline.version, None, None)
    waited = Waiter(ws, submitted.name, emit, timeout_s).wait()
    producers = json.loads((component.tags or {}).get(TAG_PRODUCERS) or "{}")
    return _run_entity(ws, waited.job, pipeline.name, pipeline.version, waited.children, waited.error,
                       with_metrics=status_of(waited.job) == "Completed", require_metrics=True, producers=producers)


def _pipeline_job(component: Any, overrides: dict[str, str], experiment: str | None, tags: dict[str, str],
                  reuse: bool) -> Any:
    from azure.ai.ml import Input, Output
    from azure.ai.ml.entities import PipelineJob

    own_tags = component.tags or {}
    values = {**json.loads(own_tags.get(TAG_INPUTS) or "{}"), **_coerced(component, overrides)}
    inputs = {}
    for name, definition in component.inputs.items():
        value = values.get(name)
        if definition.type in ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model"):
            if value is None:
                raise AmlopsError(f"pipeline input '{name}' ({definition.type}) has no value on Azure ML: pass "
                                  f"--set inputs.{name}=azureml://datastores/<datastore>/paths/<file> (upload it with "
                                  "`amlops datastore upload --backend azure`)")
            inputs[name] = Input(type=definition.type, path=str(value))
        elif value is not None:
            inputs[name] = value
    outputs = {name: Output(type=definition.type) for name, definition in component.outputs.items()}
    settings = {"force_rerun": not reuse}
    if own_tags.get(TAG_COMPUTE):
        settings["default_compute"] = compute_name(own_tags[TAG_COMPUTE])
    experiment = experiment or own_tags.get(TAG_EXPERIMENT) or component.name
    return PipelineJob(component=component.id, inputs=inputs, outputs=outputs, settings=settings,
                       experiment_name=experiment, display_name=f"{component.name}:{component.version}",
                       tags={**tags, TAG_PIPELINE: f"{component.name}:{component.version}"})


def require_compute(ws: "AzureWorkspace", name: str) -> None:
    """The compute a job runs on must exist: the service accepts a job on a missing compute and fails it only
    when it runs."""
    try:
        with translated(f"compute {name} in workspace {ws.workspace_name}"):
            ws.ml_client.compute.get(name)
    except NotFoundError:
        raise AmlopsError(f"compute {name} does not exist in workspace {ws.workspace_name}; create it "
                          "(environment_setup/azuredeploy.json creates cpu-cluster) or change settings.default_compute "
                          "in the pipeline YAML and publish again") from None


def _coerced(component: Any, overrides: dict[str, str]) -> dict[str, Any]:
    values = {}
    for name, text in overrides.items():
        definition = component.inputs.get(name)
        if definition is None:
            known = ", ".join(component.inputs) or "none"
            raise AmlopsError(f"--set inputs.{name}: pipeline {component.name}:{component.version} has no input "
                              f"'{name}' (inputs: {known})")
        try:
            values[name] = coerce(text, definition.type)
        except ValueError:
            raise AmlopsError(f"--set inputs.{name}={text}: expected a value of type {definition.type}") from None
    return values


class Waiter:
    """Polls a job until a terminal state; past the deadline sends a cancel and waits for it to land."""

    def __init__(self, ws: "AzureWorkspace", name: str, emit: Events, timeout_s: float | None):
        self.ws, self.name, self.emit = ws, name, emit
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.timeout_s = timeout_s
        self.status: str | None = None
        self.children: dict[str, str] = {}
        self.child_ids: dict[str, str] = {}
        self.error: str | None = None
        self.job: Any = None

    def wait(self) -> "Waiter":
        try:
            while not self._poll_through_failures():
                if self._past_deadline():
                    return self._cancel(f"timed out after {self.timeout_s:g} s")
                time.sleep(self.ws.poll_interval_s)
        except KeyboardInterrupt:
            self.request_cancel("interrupted")
            raise
        if status_of(self.job) == "Failed":
            self.error = failure_message(self.ws, self.job)
            for step, status in self.children.items():
                if status == "Failed":
                    show_step_failure(self.ws, step, self.child_ids[step], self.emit)
        return self

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def _poll_through_failures(self) -> bool:
        """`_poll`, read again with backoff while Azure or the network fails; when it keeps failing (or the
        deadline passes, or the failure is not one that passes) the job's cancel is requested, so the job does not
        run on unwatched, and the error says so."""
        failures = 0
        while True:
            try:
                return self._poll()
            except AmlopsError as error:
                failures += 1
                reason, transient = str(error), isinstance(error, TransientAzureError)
            if not transient or failures >= MAX_POLL_FAILURES or self._past_deadline():
                why = "failed" if not transient else f"failed {failures} times in a row" \
                    if failures >= MAX_POLL_FAILURES else f"failed until the deadline ({self.timeout_s:g} s)"
                self.request_cancel(f"polling job {self.name} {why}")
                raise AmlopsError(f"polling job {self.name} {why} ({reason}); cancel requested for job {self.name} "
                                  f"(not waiting for it): check it in Azure ML studio or with `amlops runs show "
                                  f"{self.name} --backend azure`") from None
            wait_s = min(self.ws.poll_interval_s * 2 ** (failures - 1), MAX_POLL_BACKOFF_S)
            if self.deadline is not None:
                wait_s = max(0.0, min(wait_s, self.deadline - time.monotonic()))
            self.emit("info", "", f"polling job {self.name} failed ({reason}); retrying in {wait_s:g} s")
            time.sleep(wait_s)

    def _poll(self) -> bool:
        with translated(f"job {self.name}"):
            self.job = self.ws.ml_client.jobs.get(self.name)
            if status_of(self.job) != self.status:
                self.status = status_of(self.job)
                self.emit("status", "", self.status)
            self._poll_children()
        return self.status in TERMINAL_STATUSES

    def _poll_children(self) -> None:
        for child in self.ws.ml_client.jobs.list(parent_job_name=self.name):
            if child is None:
                continue
            step = child.display_name or child.name
            self.child_ids[step] = child.name
            if self.children.get(step) != status_of(child):
                self.children[step] = status_of(child)
                self.emit("status", step, self.children[step])

    def request_cancel(self, reason: str) -> None:
        """Send the job's cancel without waiting for it: a cancelled task has seconds before it is killed."""
        self.emit("info", "", f"{reason}: cancel requested for job {self.name} (not waiting for it)")
        try:
            self.ws.ml_client.jobs.begin_cancel(self.name)  # the POST goes out here; .result() would poll
        except Exception as error:  # noqa: BLE001 - reported, the task is ending anyway
            self.emit("info", "", f"could not request the cancel of job {self.name}: {error}")

    def _cancel(self, reason: str) -> "Waiter":
        self.emit("info", "", f"{reason}: canceling job {self.name}")
        with translated(f"canceling job {self.name}"):
            self.ws.ml_client.jobs.begin_cancel(self.name).result()
        still = ""
        try:
            for _ in range(CANCEL_GRACE_POLLS):
                if self._poll():
                    break
                time.sleep(self.ws.poll_interval_s)
        except TransientAzureError:
            still = " (its status could not be read since)"
        if not still and self.status != "Canceled":
            still = f" (the job is still {self.status})"
        self.error = f"{reason}; cancel sent{still}"
        return self


def failure_message(ws: "AzureWorkspace", job: Any) -> str:
    """The service's error for a failed job (run history), with where to read the step logs."""
    message = ""
    try:
        run = ws.ml_client.jobs._runs_operations.get_run(job.name)  # the error lives in run history only
        error = getattr(getattr(run, "error", None), "error", None)
        message = getattr(error, "message", "") or ""
    except Exception:  # noqa: BLE001 - best effort: the status alone is still reported
        message = ""
    where = f"; logs: {job.studio_url}" if getattr(job, "studio_url", None) else ""
    return (message.strip().splitlines() or ["a step failed"])[0] + where


LOG_TAIL_LINES = 30


def show_step_failure(ws: "AzureWorkspace", step: str, child: str, emit: Events) -> None:
    """The failed step's own error (run history) and the tail of its user log, into the pipeline log: the
    pipeline's error only names the failed node."""
    try:
        with translated(f"the logs of step {step} (job {child})"):
            run = ws.ml_client.jobs._runs_operations.get_run(child)  # a child's error lives in run history only
            error = getattr(getattr(getattr(run, "error", None), "error", None), "message", "") or ""
            for line in error.strip().splitlines()[:LOG_TAIL_LINES]:
                emit("log", step, line)
            with tempfile.TemporaryDirectory(prefix="amlops-logs-") as folder:
                ws.ml_client.jobs.download(child, download_path=folder)
                logs = sorted(Path(folder).rglob("std_log.txt"))
                lines = logs[0].read_text(encoding="utf-8", errors="replace").splitlines() if logs else []
    except AmlopsError as failure:
        emit("info", step, f"cannot read the step's logs: {failure}")
        return
    if lines:
        emit("info", step, f"last {min(len(lines), LOG_TAIL_LINES)} lines of user_logs/std_log.txt:")
    for line in lines[-LOG_TAIL_LINES:]:
        emit("log", step, line)


def _metrics_source(ws: "AzureWorkspace", name: str, producer: list[str] | None,
                    output: str = METRICS_OUTPUT) -> tuple[str, str]:
    """(job, output) holding metrics.json: the child run of the step that writes the pipeline's `metrics` output,
    where the service stores it (the pipeline job's own output is an alias that azure-ai-ml 1.35 cannot download:
    run history types it `UriFolder`, Azure/azure-sdk-for-python#48941, and its fallback looks under the
    pipeline job's path). Without that step known: the pipeline job's output."""
    if producer:
        step, step_output = producer
        for child in ws.ml_client.jobs.list(parent_job_name=name):
            if child is not None and (child.display_name or child.name) == step:
                return child.name, step_output
    return name, output


def output_metrics(ws: "AzureWorkspace", name: str, output: str) -> dict:
    """metrics.json of the job's output `output` (the task's `metricsOutput`)."""
    with translated(f"job {name}"):
        job = ws.ml_client.jobs.get(name)
    if output not in (job.outputs or {}):
        raise AmlopsError(f"job {name} has no output '{output}' (outputs: {', '.join(job.outputs or {}) or 'none'}); "
                          "check the output name in the pipeline's 'outputs'")
    return read_metrics(ws, name, required=True, producer=_producers(ws, job).get(output), output=output)


def read_metrics(ws: "AzureWorkspace", name: str, required: bool, producer: list[str] | None = None,
                 output: str = METRICS_OUTPUT) -> dict:
    """metrics.json of the job's `metrics` output (or `output`), downloaded with jobs.download from the step that
    wrote it."""
    pipeline_output = output
    with tempfile.TemporaryDirectory(prefix="amlops-metrics-") as folder:
        with translated(f"the '{pipeline_output}' output of job {name}"):
            job, output = _metrics_source(ws, name, producer, pipeline_output)
            ws.ml_client.jobs.download(job, output_name=output, download_path=folder)
        found = sorted(Path(folder, "named-outputs", output).rglob(METRICS_FILE))
        if not found:
            if required:
                raise AmlopsError(missing(f"job {name} completed but its '{pipeline_output}' output",
                                          pipeline_output))
            return {}
        return parse_metrics(found[0].read_text(encoding="utf-8"), f"{METRICS_FILE} of job {name}")


def _run_entity(ws: "AzureWorkspace", job: Any, pipeline_name: str | None, pipeline_version: str | None,
                children: dict[str, str] | None, error: str | None, with_metrics: bool = False,
                require_metrics: bool = False, producers: dict | None = None) -> Run:
    tags = dict(job.tags or {})
    reference = tags.pop(TAG_PIPELINE, ":")
    name, _, version = reference.partition(":")
    outputs = {output: job_output_uri(job.name, output) for output in (job.outputs or {})
               if not output.startswith("default")}
    metrics = {}
    if with_metrics and METRICS_OUTPUT in outputs:
        metrics = read_metrics(ws, job.name, required=require_metrics,
                               producer=(producers if producers is not None else _producers(ws, job)).get(
                                   METRICS_OUTPUT))
    created = getattr(getattr(job, "creation_context", None), "created_at", None)
    return Run(id=job.name, pipeline_name=pipeline_name or name, pipeline_version=pipeline_version or version,
               experiment=job.experiment_name or "", status=status_of(job), created_at=str(created or ""),
               ended_at=None, parameters=_parameters(job), tags=tags,
               steps=tuple(StepRun(step, status) for step, status in (children or {}).items()),
               outputs=outputs, metrics=metrics, error=error)


def _producers(ws: "AzureWorkspace", job: Any) -> dict:
    """The steps writing the pipeline's outputs, from the published pipeline the job ran (its amlops tags)."""
    name, _, version = (job.tags or {}).get(TAG_PIPELINE, "").partition(":")
    if not name or not version:
        return {}
    try:
        component = get_component(ws, name, version)
    except AmlopsError:
        return {}
    return json.loads((component.tags or {}).get(TAG_PRODUCERS) or "{}")


def _parameters(job: Any) -> dict:
    parameters = {}
    for name, value in (job.inputs or {}).items():
        data = getattr(value, "_data", value)
        parameters[name] = data if isinstance(data, (str, int, float, bool)) or data is None else \
            getattr(data, "path", str(data))
    return parameters


def get(ws: "AzureWorkspace", run_id: str) -> Run:
    try:
        with translated(f"job {run_id} in workspace {ws.workspace_name}"):
            job = ws.ml_client.jobs.get(run_id)
            children = {(c.display_name or c.name): status_of(c)
                        for c in ws.ml_client.jobs.list(parent_job_name=run_id) if c is not None}
    except NotFoundError:
        raise NotFoundError(f"run {run_id} not found in Azure ML workspace {ws.workspace_name}; `amlops runs list "
                            "--backend azure` shows the runs") from None
    error = failure_message(ws, job) if status_of(job) == "Failed" else None
    return _run_entity(ws, job, None, None, children, error, with_metrics=status_of(job) == "Completed")


def list_recent(ws: "AzureWorkspace", limit: int) -> list[Run]:
    runs = []
    with translated(f"the jobs of workspace {ws.workspace_name}"):
        for job in ws.ml_client.jobs.list():
            if job is None or getattr(job, "type", None) != "pipeline":
                continue
            runs.append(_run_entity(ws, job, None, None, None, None))
            if len(runs) >= limit:
                break
    return runs


def output_uri(run: Run, output: str) -> AzureMLUri:
    if output not in run.outputs:
        known = ", ".join(run.outputs) or "none"
        raise NotFoundError(f"run {run.id} has no output '{output}' (outputs: {known}); check the output name in "
                            "the pipeline's 'outputs'")
    return job_output_uri(run.id, output)
