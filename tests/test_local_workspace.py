"""The local workspace: publish snapshots, runs, step reuse, datastores, atomic model registration."""
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amlops import api
from amlops.errors import AmlopsError, NotFoundError
from amlops.workspace.local.snapshot import file_hash
from amlops.workspace.local.workspace import LocalWorkspace
from support import edit


def publish_and_run(ws, project: Path, **kwargs):
    published = api.publish(ws, project / "pipeline.yml")
    return api.submit(ws, published.name, **kwargs)


def test_publish_snapshots_and_versions(workspace, mini_project: Path):
    first = api.publish(workspace, mini_project / "pipeline.yml")
    unchanged = api.publish(workspace, mini_project / "pipeline.yml")
    assert (first.version, unchanged.version) == ("1", "1")
    assert (first.snapshot.parent / "code" / "make.py").is_file()
    assert (first.snapshot.parent / "data" / "numbers.csv").is_file()
    edit(mini_project / "code/make.py", "total * args.scale", "total * args.scale * 1000")
    assert api.publish(workspace, mini_project / "pipeline.yml").version == "2"
    run = api.submit(workspace, "mini-pipeline", version="1")
    assert run.metrics == {"auc": 0.7}, "the run must use the snapshot, not the edited source"


def test_the_local_workspace_refuses_to_submit_without_waiting(workspace, mini_project: Path):
    """It runs the steps in this process: there is nothing to come back to, so it says so instead of pretending."""
    published = api.publish(workspace, mini_project / "pipeline.yml")
    with pytest.raises(AmlopsError, match="cannot submit without waiting"):
        api.submit(workspace, published.name, wait=False)
    assert workspace.list_runs() == []


def test_publish_with_a_given_version_is_idempotent_but_immutable(workspace, mini_project: Path):
    api.publish(workspace, mini_project / "pipeline.yml", version="20261129.1")
    again = api.publish(workspace, mini_project / "pipeline.yml", version="20261129.1")
    assert again.version == "20261129.1"
    edit(mini_project / "code/score.py", "value / 100", "value / 10")
    with pytest.raises(AmlopsError, match="already published with different content"):
        api.publish(workspace, mini_project / "pipeline.yml", version="20261129.1")


def test_a_run_records_steps_logs_outputs_and_metrics(workspace, mini_project: Path):
    lines = []
    run = publish_and_run(workspace, mini_project, tags={"build_id": "42"}, on_progress=lines.append)
    assert run.status == "Completed" and run.error is None
    assert [(s.name, s.status) for s in run.steps] == [("make", "Completed"), ("score", "Completed")]
    assert run.metrics == {"auc": 0.7}
    assert run.tags == {"build_id": "42"}
    assert (Path(run.outputs["model"]) / "model.txt").read_text() == "70.0"
    assert "training on" in run.steps[0].log_path.read_text()
    assert any(line.startswith("[make] training on") for line in lines)
    assert workspace.list_runs()[0].id == run.id


def test_a_relative_workspace_path_works_from_the_steps_folders(mini_project: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = LocalWorkspace("relative-ws")
    run = publish_and_run(ws, mini_project)
    assert run.metrics == {"auc": 0.7}
    assert Path(run.outputs["model"]).is_absolute() and (Path(run.outputs["model"]) / "model.txt").is_file()


def test_an_unchanged_rerun_reuses_every_step(workspace, mini_project: Path):
    first = publish_and_run(workspace, mini_project)
    second = api.submit(workspace, "mini-pipeline")
    assert [s.reused_from for s in second.steps] == [first.id, first.id]
    assert second.metrics == first.metrics
    forced = api.submit(workspace, "mini-pipeline", reuse=False)
    assert [s.reused_from for s in forced.steps] == [None, None]
    changed = api.submit(workspace, "mini-pipeline", overrides={"scale": "3"})
    assert [s.reused_from for s in changed.steps] == [None, None]
    assert changed.metrics == {"auc": 1.05}


def test_a_failed_step_fails_the_run_and_skips_its_dependents(workspace, mini_project: Path, monkeypatch):
    monkeypatch.setenv("MINI_FAIL", "make")
    run = publish_and_run(workspace, mini_project)
    assert run.status == "Failed"
    assert [(s.name, s.status) for s in run.steps] == [("make", "Failed"), ("score", "Canceled")]
    assert "step 'make' failed with exit code 1" in run.error and "failing on purpose" in run.error
    with pytest.raises(AmlopsError, match="ended Failed"):
        api.register_if_better(workspace, run, model_name="m")


def test_the_timeout_cancels_the_run_and_its_step(workspace, mini_project: Path, monkeypatch):
    monkeypatch.setenv("MINI_SLEEP", "30")
    run = publish_and_run(workspace, mini_project, timeout_s=1)
    assert run.status == "Canceled" and "timed out after 1 s" in run.error
    assert {s.status for s in run.steps} == {"Canceled"}


def test_datastore_inputs_resolve_to_the_uploaded_file(workspace, mini_project: Path, tmp_path: Path):
    data = tmp_path / "more.csv"
    data.write_text("50\n50\n")
    uri = workspace.upload_to_datastore("training_data", data, "v2/more.csv")
    assert uri == "azureml://datastores/training_data/paths/v2/more.csv"
    run = publish_and_run(workspace, mini_project, overrides={"data": uri})
    assert run.status == "Completed" and run.metrics == {"auc": 2.0}


def test_a_run_whose_input_fails_at_start_ends_failed_not_running(workspace, mini_project: Path, tmp_path: Path):
    api.publish(workspace, mini_project / "pipeline.yml")
    run = api.submit(workspace, "mini-pipeline", overrides={"data": "azureml://datastores/training_data/paths/x"})
    assert run.status == "Failed" and "amlops datastore upload --datastore training_data" in run.error
    assert [(s.name, s.status) for s in run.steps] == [("make", "Failed"), ("score", "Canceled")]
    assert LocalWorkspace(workspace.root).get_run(run.id).status == "Failed"


def test_register_gate_and_lineage(workspace, mini_project: Path):
    run = publish_and_run(workspace, mini_project, tags={"build_id": "7"})
    decision = api.register_if_better(workspace, run, model_name="mini")
    assert decision.registered and decision.model.version == 1
    assert decision.model.tags["auc"] == "0.7" and decision.model.tags["run_id"] == run.id
    assert decision.model.tags["build_id"] == "7"
    assert (decision.model.path / "model.txt").read_text() == "70.0"
    same = api.register_if_better(workspace, api.submit(workspace, "mini-pipeline"), model_name="mini")
    assert not same.registered and "not better" in same.message and "0.7000 vs 0.7000" in same.message
    assert [m.version for m in workspace.list_models("mini")] == [1]
    better = api.register_if_better(workspace, api.submit(workspace, "mini-pipeline", overrides={"scale": "3"}),
                                    model_name="mini")
    assert better.registered and better.model.version == 2 and better.baseline == 0.7


def test_the_gate_reads_metrics_from_the_named_output(workspace, mini_project: Path):
    """AmlRunPipeline's metricsOutput: a pipeline whose metrics output has another name still gates."""
    edit(mini_project / "pipeline.yml", "  metrics:\n    type: uri_folder", "  eval_metrics:\n    type: uri_folder")
    edit(mini_project / "pipeline.yml", "${{parent.outputs.metrics}}", "${{parent.outputs.eval_metrics}}")
    run = publish_and_run(workspace, mini_project)
    with pytest.raises(AmlopsError, match="no numeric metric 'auc'"):
        api.register_if_better(workspace, run, model_name="mini")
    decision = api.register_if_better(workspace, run, model_name="mini", metrics_output="eval_metrics")
    assert decision.registered and decision.model.tags["auc"] == "0.7"
    with pytest.raises(NotFoundError, match="has no output 'nope'"):
        api.register_if_better(workspace, run, model_name="mini", metrics_output="nope")


def test_a_metrics_file_that_is_not_an_object_is_a_clear_error(workspace, mini_project: Path):
    edit(mini_project / "pipeline.yml", "  metrics:\n    type: uri_folder", "  eval_metrics:\n    type: uri_folder")
    edit(mini_project / "pipeline.yml", "${{parent.outputs.metrics}}", "${{parent.outputs.eval_metrics}}")
    run = publish_and_run(workspace, mini_project)
    (Path(run.outputs["eval_metrics"]) / "metrics.json").write_text("[0.7]")
    with pytest.raises(AmlopsError, match="is not a JSON object"):
        api.register_if_better(workspace, run, model_name="mini", metrics_output="eval_metrics")


def test_models_not_found_is_a_clear_error(workspace):
    with pytest.raises(NotFoundError, match="model nope is not registered"):
        workspace.get_model("nope")


def _register_many(root: str, source: str, count: int) -> None:
    ws = LocalWorkspace(root)
    for _ in range(count):
        ws.register_model("shared", Path(source), {}, {}, None)


def test_concurrent_registrations_get_distinct_consecutive_versions(tmp_path: Path):
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.txt").write_text("x")
    LocalWorkspace(tmp_path / "ws")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_register_many, args=(str(tmp_path / "ws"), str(source), 5))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    versions = [m.version for m in LocalWorkspace(tmp_path / "ws").list_models("shared")]
    assert versions == list(range(1, 21))
    assert sorted(p.name for p in (tmp_path / "ws/models/shared").iterdir()) == sorted(map(str, range(1, 21)))


def test_a_registration_that_crashes_leaves_no_half_model(workspace, tmp_path: Path, monkeypatch):
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.txt").write_text("x")

    def crash(*args):
        raise OSError("disk full")
    monkeypatch.setattr("amlops.workspace.local.workspace.os.replace", crash)
    with pytest.raises(OSError):
        workspace.register_model("m", source, {}, {}, None)
    monkeypatch.undo()
    assert workspace.list_models("m") == []
    assert not (workspace.root / "models" / "m").exists()  # nor an empty folder
    assert workspace.register_model("m", source, {}, {}, None).version == 1


def _amlops(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "amlops", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def _wait_for_line(process: subprocess.Popen, words: str) -> None:
    for line in process.stdout:
        if words in line:
            return
    raise AssertionError(f"never printed {words!r}")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_an_interrupted_run_leaves_nothing_running(mini_project: Path, tmp_path: Path, signal_name):
    import signal

    ws_path = str(tmp_path / "ws")
    api.publish(LocalWorkspace(ws_path), mini_project / "pipeline.yml")
    process = _amlops("submit", "mini-pipeline", "--workspace", ws_path, env={"MINI_SLEEP": "60"})
    _wait_for_line(process, "step make: Running")
    process.send_signal(getattr(signal, signal_name))
    process.stdout.read()
    exit_code = process.wait(30)
    run = LocalWorkspace(ws_path).list_runs()[0]
    assert {s.status for s in run.steps} == {"Canceled"}
    if signal_name == "SIGINT":
        assert exit_code == 130 and run.status == "Canceled" and "Ctrl-C" in run.error
    else:
        assert run.status == "Failed" and "ended before the run finished" in run.error
    deadline = time.monotonic() + 5  # the step's supervisor stops the tree within moments of the owner's end
    while True:
        leftover = subprocess.run(["pgrep", "-f", "make.py --data " + ws_path], capture_output=True, text=True)
        if leftover.stdout.strip() == "" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert leftover.stdout.strip() == "", "the step process outlived its run"


def test_a_file_unchanged_across_versions_is_stored_once(workspace, mini_project):
    first = workspace.publish_pipeline(mini_project / "pipeline.yml", version="1")
    (mini_project / "code" / "make.py").write_text((mini_project / "code" / "make.py").read_text() + "\n# v2\n")
    second = workspace.publish_pipeline(mini_project / "pipeline.yml", version="2")
    data = [version.snapshot.parent / "data" / "numbers.csv" for version in (first, second)]
    code = [version.snapshot.parent / "code" / "make.py" for version in (first, second)]
    assert os.path.samefile(*data) and data[0].stat().st_nlink == 3  # two snapshots and objects/<sha256>
    assert not os.path.samefile(*code)
    stored = workspace.root / "objects" / file_hash(data[0])
    assert stored.is_file() and os.path.samefile(stored, data[1])


def test_models_register_as_mlflow_model_only_with_an_mlmodel_file(workspace, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.txt").write_text("tree")
    with pytest.raises(AmlopsError, match=r"is not an MLflow model \(no MLmodel file at its root\)"):
        workspace.register_model("m", plain, {}, {}, None, model_type="mlflow_model")
    with pytest.raises(AmlopsError, match="model type 'triton_model' is not supported"):
        workspace.register_model("m", plain, {}, {}, None, model_type="triton_model")
    assert workspace.list_models("m") == []
    (plain / "MLmodel").write_text("flavors: {}\n")
    registered = workspace.register_model("m", plain, {}, {}, None, model_type="mlflow_model")
    assert registered.type == "mlflow_model" and workspace.get_model("m").type == "mlflow_model"
    assert workspace.register_model("m", plain, {}, {}, None).type == "custom_model"
