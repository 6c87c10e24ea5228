"""The flow on Azure ML through the real azure-ai-ml client against the fake service and Azurite:
publish -> submit -> wait -> metrics -> gate -> register -> download, with the fake enforcing the service's rules
(computes, identity-based data access, run history's outputs and paths, model registration from a job output),
and the ways a run ends badly."""
from __future__ import annotations

import json
import re

import pytest

from amlops import api
from amlops.errors import AmlopsError, PipelineValidationError

DATA_URI = "azureml://datastores/training_data/paths/porto_seguro_sample.csv"


def outputs(auc: float | None = 0.71) -> dict:
    files = {"model": {"model.txt": b"tree 0\n"}}
    if auc is not None:
        files["metrics"] = {"metrics.json": json.dumps({"auc": auc, "accuracy": 0.9}).encode()}
    return files


def run_pipeline(ws, name, version, events=None, timeout_s=60.0, **kwargs):
    return api.submit(ws, name, version=version, overrides={"training_data": DATA_URI}, experiment="ci",
                      tags={"build_id": "42", "commit": "abc123"}, timeout_s=timeout_s,
                      on_event=(lambda *event: events.append(event)) if events is not None else None, **kwargs)


def test_publish_submit_wait_metrics_gate_register_download(azure_ws, fake, training_project, training_data,
                                                            tmp_path, capfd):
    fake.job_outputs = outputs(auc=0.71)
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="20240101.1")
    assert (published.name, published.version) == ("safe_driver_training", "20240101.1")
    assert published.id.endswith("/components/safe_driver_training/versions/20240101.1")

    events: list = []
    run = run_pipeline(azure_ws, published.name, published.version, events)

    assert run.status == "Completed", run.error
    assert [text for kind, step, text in events if kind == "status" and not step] == \
        ["NotStarted", "Queued", "Provisioning", "Running", "Completed"]
    assert [text for kind, step, text in events if step == "train"] == ["NotStarted", "Queued", "Running", "Completed"]
    assert [text for kind, step, text in events if step == "evaluate"][-1] == "Completed"
    assert run.metrics == {"auc": 0.71, "accuracy": 0.9}
    # AmlRunPipeline's metricsOutput: any output, read from the step that wrote it
    assert azure_ws.run_metrics(run, "metrics") == run.metrics
    with pytest.raises(AmlopsError, match=f"job {run.id} has no output 'nope' \\(outputs: "):
        azure_ws.run_metrics(run, "nope")
    job_body = fake.calls("PUT", "/jobs/")[0].body["properties"]
    assert training_data == DATA_URI  # the template's trainingdata container, read with the cluster's identity
    assert job_body["inputs"]["training_data"] == {"uri": DATA_URI, "jobInputType": "uri_file"}
    assert job_body["settings"]["default_compute"] == f"{fake.prefix}/computes/cpu-cluster"
    assert job_body["experimentName"] == "ci" and job_body["settings"]["force_rerun"] is False
    assert job_body["tags"]["build_id"] == "42" and job_body["componentId"] == published.id

    decision = api.register_if_better(azure_ws, run, model_name="safe-driver", tags={"build_id": "42"})
    assert decision.registered and decision.model.version == 1
    model_body = fake.calls("PUT", "/models/safe-driver/versions/")[0].body["properties"]
    assert model_body["modelUri"] == f"azureml://jobs/{run.id}/outputs/model"
    assert model_body["modelType"] == "custom_model"
    assert model_body["tags"]["auc"] == "0.71" and model_body["tags"]["run_id"] == run.id
    assert model_body["tags"]["pipeline"] == "safe_driver_training:20240101.1"
    # the service resolved the job output to where the train step wrote it; models.download reads that back
    folder = azure_ws.download_model(decision.model, tmp_path / "downloaded")
    assert (folder / "model" / "model.txt").read_bytes() == b"tree 0\n"

    fake.job_outputs = outputs(auc=0.65)
    worse = run_pipeline(azure_ws, published.name, published.version)
    decision = api.register_if_better(azure_ws, worse, model_name="safe-driver")
    assert not decision.registered and "not better: auc 0.6500 vs 0.7100 of safe-driver:1" in decision.message
    assert [m.version for m in azure_ws.list_models("safe-driver")] == [1]
    assert not fake.problems and not fake.unhandled
    assert capfd.readouterr().err == "", "azure-ai-ml must not write on stderr (steps may fail on stderr)"


def test_a_failed_job_ends_failed_with_the_step_error_and_log_and_cannot_be_registered(
        azure_ws, fake, training_project, training_data):
    fake.job_plan = "fail"
    fake.step_logs["train"] = "loading data\n" + "".join(f"line {n}\n" for n in range(40)) + \
        "Traceback (most recent call last):\nValueError: the CSV has no 'target' column\n"
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="7")
    events: list = []
    run = run_pipeline(azure_ws, published.name, published.version, events)

    assert run.status == "Failed"
    assert "Failed nodes: /train" in run.error and "https://ml.azure.com/runs/" in run.error
    assert {step.name: step.status for step in run.steps} == {"train": "Failed", "evaluate": "Canceled"}
    assert ("status", "train", "Failed") in events
    # the failed step's own error and the tail of its log, in the pipeline log
    logs = [text for kind, step, text in events if kind == "log" and step == "train"]
    assert logs[0].startswith("Execution failed. User process 'python' exited with status code 1")
    assert logs[-2:] == ["Traceback (most recent call last):", "ValueError: the CSV has no 'target' column"]
    assert "line 10" not in logs and "line 12" in logs  # the last 30 lines of the user log
    with pytest.raises(AmlopsError, match=f"run {run.id} ended Failed, so its model cannot be registered"):
        api.register_if_better(azure_ws, run, model_name="safe-driver")
    assert not fake.calls("PUT", "/models/") and not fake.problems


def test_submit_without_waiting_returns_the_job_name_and_the_run_is_gated_later(azure_ws, fake, training_project,
                                                                                training_data):
    """wait=False (AmlRunPipeline `wait: false`): one PUT, no polling; whoever waits (an agentless job) hands the
    job name back, and the finished run is read and gated then."""
    fake.job_outputs = outputs(auc=0.71)
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="3")
    events: list = []
    run = run_pipeline(azure_ws, published.name, published.version, events, wait=False)

    assert run.status == "NotStarted" and not run.is_terminal
    assert run.id == fake.calls("PUT", "/jobs/")[0].path.rsplit("/", 1)[-1].split("?")[0]
    assert not fake.calls("GET", f"/jobs/{run.id}"), "nothing polls the job"
    assert [text for kind, _, text in events if kind == "status"] == []

    later = azure_ws.get_run(run.id)
    while not later.is_terminal:
        later = azure_ws.get_run(run.id)
    assert later.status == "Completed" and later.metrics["auc"] == 0.71
    assert api.register_if_better(azure_ws, later, model_name="safe-driver").registered
    assert not fake.problems and not fake.unhandled


def test_a_job_that_never_finishes_is_canceled_at_the_deadline(azure_ws, fake, training_project, training_data):
    fake.job_plan = "hang"
    azure_ws.poll_interval_s = 0.05
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="7")
    events: list = []
    run = run_pipeline(azure_ws, published.name, published.version, events, timeout_s=0.5)

    assert run.status == "Canceled"
    assert run.error == "timed out after 0.5 s; cancel sent"
    cancels = fake.calls("POST", "/cancel")
    assert len(cancels) == 1 and cancels[0].path.endswith(f"/jobs/{run.id}/cancel")
    assert ("info", "", f"timed out after 0.5 s: canceling job {run.id}") in events
    parent = [text for kind, step, text in events if kind == "status" and not step]
    assert parent[-2:] == ["CancelRequested", "Canceled"]
    assert {step.name: step.status for step in run.steps}["train"] == "Canceled"


def submit_with_failing_reads(ws, fake, project, events: list, timeout_s: float = 60.0, **fault):
    """Publish and submit the pipeline; once the job runs, its GETs fail as `fault` says (the arguments of
    fake.fail_next, or faults=[...] for several in turn). The events go to `events`."""
    def on_event(kind, step, text):
        events.append((kind, step, text))
        if (kind, step, text) == ("status", "", "Running") and not fake.faults:
            job = fake.calls("PUT", "/jobs/")[0].path.rsplit("/", 1)[-1]
            for kwargs in fault.get("faults") or [fault]:
                fake.fail_next("GET", f"/jobs/{job}", **kwargs)

    published = api.publish(ws, project / "pipeline.yml", version="7")
    return api.submit(ws, published.name, version=published.version, overrides={"training_data": DATA_URI},
                      timeout_s=timeout_s, on_event=on_event)


def test_a_job_whose_status_cannot_be_read_for_a_while_is_still_waited_for(azure_ws, fake, training_project,
                                                                           training_data):
    """503s past azure-core's own retries, then dropped connections, on the job's GET mid-run: the wait reads
    again with backoff, and the run ends Completed with no cancel."""
    fake.job_outputs = outputs(auc=0.71)
    azure_ws.poll_interval_s = 0.01
    events: list = []
    # azure-core sends a GET 4 times (3 retries) before giving up: two failed polls of each kind
    run = submit_with_failing_reads(azure_ws, fake, training_project, events,
                                    faults=[{"status": 503, "times": 8}, {"reset": True, "times": 8}])

    assert run.status == "Completed", run.error
    assert run.metrics["auc"] == 0.71 and not fake.calls("POST", "/cancel")
    statuses = [r.status for r in fake.calls("GET", f"/jobs/{run.id}")]
    assert statuses.count(503) == 8 and statuses.count(-1) == 8 and statuses[-1] == 200
    retries = [text for kind, _, text in events if kind == "info" and text.startswith("polling job")]
    assert len(retries) == 4, retries
    assert re.fullmatch(rf"polling job {run.id} failed \(Azure kept failing for job {run.id} after retries \(503 "
                        r"InternalServerError\): .*\); retrying in 0.01 s", retries[0])
    assert re.fullmatch(rf"polling job {run.id} failed \(cannot reach Azure for job {run.id} \(retried\): .*\); "
                        r"retrying in 0.04 s", retries[2])
    assert [line.rsplit(" ", 2)[-2] for line in retries] == ["0.01", "0.02", "0.04", "0.08"], \
        "the wait doubles while the failures go on"


def test_a_job_whose_status_cannot_be_read_any_more_is_canceled_and_the_wait_ends(azure_ws, fake, training_project,
                                                                                  training_data):
    fake.job_plan = "hang"
    azure_ws.poll_interval_s = 0.001
    events: list = []
    with pytest.raises(AmlopsError) as raised:
        submit_with_failing_reads(azure_ws, fake, training_project, events, status=503, times=10_000)

    job = fake.calls("PUT", "/jobs/")[0].path.rsplit("/", 1)[-1]
    message = str(raised.value)
    assert re.fullmatch(rf"polling job {job} failed 8 times in a row \(Azure kept failing for job {job} after "
                        rf"retries \(503 InternalServerError\): .*\); cancel requested for job {job} \(not waiting "
                        rf"for it\): check it in Azure ML studio or with `amlops runs show {job} --backend azure`",
                        message)
    cancels = fake.calls("POST", "/cancel")
    assert len(cancels) == 1 and cancels[0].path.endswith(f"/jobs/{job}/cancel") and cancels[0].status == 202
    assert fake.resources[f"{fake.prefix}/jobs/{job}".lower()]["properties"]["status"] == "CancelRequested"
    assert len([text for kind, _, text in events if "retrying in" in text]) == 7
    assert ("info", "", f"polling job {job} failed 8 times in a row: cancel requested for job {job} (not waiting "
            "for it)") in events


def test_a_job_the_identity_may_no_longer_read_is_canceled_at_once(azure_ws, fake, training_project, training_data):
    fake.job_plan = "hang"
    events: list = []
    with pytest.raises(AmlopsError, match=r"^polling job (\S+) failed \(permission denied for job \1: .*\); cancel "
                                          r"requested for job \1 \(not waiting for it\)"):
        submit_with_failing_reads(azure_ws, fake, training_project, events, status=403, times=10_000)
    assert len(fake.calls("POST", "/cancel")) == 1 and not [text for _, _, text in events if "retrying" in text]


def test_a_job_whose_status_cannot_be_read_until_the_deadline_is_canceled(azure_ws, fake, training_project,
                                                                          training_data):
    fake.job_plan = "hang"
    azure_ws.poll_interval_s = 0.05
    events: list = []
    with pytest.raises(AmlopsError, match=r"^polling job \S+ failed until the deadline \(0.5 s\) \(cannot reach "
                                          r"Azure for job .*\); cancel requested for job"):
        submit_with_failing_reads(azure_ws, fake, training_project, events, timeout_s=0.5, reset=True, times=10_000)
    assert len(fake.calls("POST", "/cancel")) == 1
    assert len([text for kind, _, text in events if "retrying in" in text]) < 8


def test_a_run_without_metrics_json_ends_with_a_clear_message(azure_ws, fake, training_project, training_data):
    fake.job_outputs = outputs(auc=None)  # the model, but no metrics output
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="7")
    with pytest.raises(AmlopsError, match=r"job \S+ completed but its 'metrics' output holds no metrics.json; the "
                                          r"evaluate step must write metrics.json into \$\{\{outputs.metrics\}\}"):
        run_pipeline(azure_ws, published.name, published.version)


def test_a_training_input_left_local_must_be_given_on_azure(azure_ws, fake, training_project):
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="7")
    with pytest.raises(AmlopsError, match=r"pipeline input 'training_data' \(uri_file\) has no value on Azure ML: pass "
                                          r"--set inputs.training_data=azureml://datastores/"):
        api.submit(azure_ws, published.name, version="7", timeout_s=5)
    assert not fake.calls("PUT", "/jobs/")


def test_versions_are_immutable_and_unchanged_content_is_not_republished(azure_ws, fake, training_project):
    first = api.publish(azure_ws, training_project / "pipeline.yml")
    assert first.version == "1"
    puts = len(fake.calls("PUT"))
    again = api.publish(azure_ws, training_project / "pipeline.yml")
    assert again.version == "1" and again.id == first.id
    assert again.component_ids["train"].endswith("/components/train_safe_driver_model/versions/1")
    assert first.component_ids == again.component_ids
    assert api.publish(azure_ws, training_project / "pipeline.yml", version="1").version == "1"
    assert len(fake.calls("PUT")) == puts, "unchanged content must not be registered again"

    source = training_project / "src" / "train.py"
    source.write_text(source.read_text() + "\n# changed\n")
    with pytest.raises(AmlopsError, match="pipeline safe_driver_training version 1 is already published in workspace "
                                          "mlw-amlops with different content; publish under a new --version"):
        api.publish(azure_ws, training_project / "pipeline.yml", version="1")
    second = api.publish(azure_ws, training_project / "pipeline.yml")
    assert second.version == "2"
    listed = [(p.name, p.version) for p in azure_ws.list_pipelines()]
    assert listed == [("safe_driver_training", "1"), ("safe_driver_training", "2")]
    assert azure_ws.get_pipeline("safe-driver-training").version == "2"
    assert not fake.problems


def test_our_validation_runs_first_and_nothing_reaches_azure(azure_ws, fake, training_project):
    pipeline = training_project / "pipeline.yml"
    pipeline.write_text(pipeline.read_text().replace("${{parent.inputs.num_leaves}}", "${{parent.inputs.leaves}}"))
    with pytest.raises(PipelineValidationError, match=r"pipeline.yml:\d+"):
        api.publish(azure_ws, pipeline)
    assert fake.requests == []


def test_publish_endpoint_deploys_the_pipeline_under_a_batch_endpoint(azure_ws, fake, training_project):
    # another workspace in the region holds the plain name: endpoint names are unique per region
    fake.region_endpoint_names.add("safe-driver-training")
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="20240101.1", publish_endpoint=True)

    name = published.endpoint_name
    assert re.fullmatch(r"safe-driver-training-[0-9a-f]{8}", name)
    assert published.endpoint_uri == f"https://{name}.westeurope.inference.ml.azure.com/jobs"
    assert published.deployment_name == "v20240101-1"
    deployment = fake.calls("PUT", f"/batchEndpoints/{name}/deployments/v20240101-1")[0].body
    assert deployment["properties"]["deploymentConfiguration"]["deploymentConfigurationType"] == "PipelineComponent"
    assert deployment["properties"]["deploymentConfiguration"]["componentId"]["assetId"] == published.id
    assert deployment["properties"]["deploymentConfiguration"]["settings"] == {"default_compute": "cpu-cluster"}
    endpoint_puts = fake.calls("PUT", f"/batchEndpoints/{name}")
    assert endpoint_puts[-1].body["properties"]["defaults"]["deploymentName"] == "v20240101-1"
    assert fake.calls("GET", "/mfeOperationsStatus/"), "the long-running operations were polled"
    assert not fake.problems and not fake.unhandled


def test_metrics_are_read_from_the_step_that_wrote_them(azure_ws, fake, training_project, training_data, tmp_path):
    """Run history types outputs `UriFolder`, which azure-ai-ml 1.35's jobs.download does not take for data
    (Azure/azure-sdk-for-python#48941), and its fallback looks under the pipeline job's path while the service
    writes under the child step's: downloading the pipeline job's output finds nothing. The evaluate step's own
    child run holds it."""
    fake.job_outputs = outputs(auc=0.8)
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="7")
    run = run_pipeline(azure_ws, published.name, published.version)
    assert run.metrics["auc"] == 0.8
    evaluate = next(c for c in azure_ws.ml_client.jobs.list(parent_job_name=run.id) if c.display_name == "evaluate")
    assert fake.calls("POST", "/rundata")[-1].body["runId"] == evaluate.name
    assert not fake.calls("POST", "/dataversion/batchGetResolvedUris"), "UriFolder outputs are not resolved"

    azure_ws.ml_client.jobs.download(run.id, output_name="metrics", download_path=tmp_path / "parent")
    assert not list((tmp_path / "parent").rglob("metrics.json")), "the pipeline job's output alias downloads nothing"


def test_an_inline_pipeline_publishes_its_jobs_as_components(azure_ws, fake, tmp_path):
    """azureml-examples-style inline command jobs become registered command components, and the pipeline
    component's jobs reference them instead of carrying command, code and environment."""
    import shutil

    from support import TESTS

    project = tmp_path / "inline_project"
    shutil.copytree(TESTS / "inline_project", project)
    published = api.publish(azure_ws, project / "pipeline.yml", version="3")
    assert published.component_ids["prep"].endswith("/components/inline_pipeline_prep/versions/3")
    assert published.component_ids["report"].endswith("/components/inline_pipeline_report/versions/3")
    step_body = fake.calls("PUT", "/components/inline_pipeline_report/versions/3")[0].body["properties"]
    spec = step_body["componentSpec"]
    assert spec["type"] == "command" and spec["command"].startswith("python report.py")
    assert set(spec["inputs"]) == {"prepared", "scale"} and set(spec["outputs"]) == {"summary"}
    pipeline_spec = fake.calls("PUT", "/components/inline_pipeline/versions/3")[0].body["properties"]["componentSpec"]
    for job in pipeline_spec["jobs"].values():
        assert "command" not in job and "environment" not in job and "code" not in job
    assert not fake.problems and not fake.unhandled


def test_a_model_registers_as_mlflow_model(azure_ws, fake, training_project, training_data):
    fake.job_outputs = outputs(auc=0.71)
    published = api.publish(azure_ws, training_project / "pipeline.yml", version="9")
    run = run_pipeline(azure_ws, published.name, published.version)
    decision = api.register_if_better(azure_ws, run, model_name="safe-driver", model_type="mlflow_model")
    assert decision.registered and decision.model.type == "mlflow_model"
    model_body = fake.calls("PUT", "/models/safe-driver/versions/")[0].body["properties"]
    assert model_body["modelType"] == "mlflow_model"
    assert azure_ws.get_model("safe-driver").type == "mlflow_model"
    assert not fake.problems and not fake.unhandled
