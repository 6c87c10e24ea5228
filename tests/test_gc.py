"""`amlops gc` (issue 19): frees old runs and pipeline versions, never what a model or a deployment needs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from amlops import api
from amlops.cli import main
from amlops.workspace.entities import Deployment
from test_data_safety import listing


@pytest.fixture
def busy(workspace, mini_project):
    """50 runs of version 1 (the first 5 executed, the rest reusing run 5's outputs), versions 2-7 with an
    extra file each, model m:1 from run 2 and m:2 from run 3, which the live deployment `live` serves."""
    api.publish(workspace, mini_project / "pipeline.yml", version="1")
    runs = [api.submit(workspace, "mini-pipeline", version="1", reuse=False) for _ in range(5)]
    runs += [api.submit(workspace, "mini-pipeline", version="1") for _ in range(45)]
    assert all(run.status == "Completed" for run in runs) and len({run.id for run in runs}) == 50
    for version in range(2, 8):
        (mini_project / "code" / "extra.txt").write_text(f"version {version}\n" * 1000)
        api.publish(workspace, mini_project / "pipeline.yml", version=str(version))
    for run in runs[1:3]:
        workspace.register_model("m", workspace.run_output(run, "model"), {"pipeline": "mini_pipeline:1"}, {},
                                 run.id)
    workspace.save_deployment(Deployment(name="live", model_name="m", model_version=2, scoring_uri="http://x",
                                         status="Healthy", created_at="", pid=os.getpid()))
    return workspace, runs


def test_gc_dry_run_on_50_runs_lists_what_it_would_free_and_keeps_what_models_and_deployments_use(busy):
    workspace, runs = busy
    before = _state(workspace)
    result = CliRunner().invoke(main, ["gc", "--dry-run", "--keep-runs", "10", "--keep-versions", "2",
                                       "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert _state(workspace) == before  # a dry run changes nothing
    removed = {line.split()[3] for line in lines if line.startswith("would remove run ")}
    kept = {run.id for run in runs[-10:]} | {runs[1].id, runs[2].id, runs[4].id}
    assert removed == {run.id for run in runs} - kept
    assert f"keep run {runs[1].id}: model m:1 was registered from it" in lines
    assert f"keep run {runs[2].id}: model m:2 was registered from it (deployment live serves it)" in lines
    assert f"keep run {runs[4].id}: run {runs[-1].id} reuses its outputs" in lines
    assert [line.split(" (")[0] for line in lines if line.startswith("would remove pipeline")] == [
        f"would remove pipeline mini_pipeline version {version}" for version in (5, 4, 3, 2)]
    assert lines[-1].startswith("would free ") and lines[-1].endswith(": 37 runs, 4 pipeline versions, 4 stored files")
    run_bytes = sum(f.stat().st_size for run in (runs[0], runs[3]) for f in workspace.run_dir(run.id).rglob("*")
                    if f.is_file())
    assert run_bytes > 0 and f"would remove run {runs[0].id} (" in result.output


def _state(workspace) -> tuple:
    """Every file (SQLite's own shared-memory index aside) and every row."""
    files = {path: info for path, info in listing(workspace.root).items() if not path.endswith(("-shm", "-wal"))}
    files.pop(str(workspace.root / "workspace.db"), None)
    return files, list(workspace.db.iterdump())


def test_gc_frees_the_space_and_everything_kept_still_works(busy):
    workspace, runs = busy
    result = CliRunner().invoke(main, ["gc", "--keep-runs", "10", "--keep-versions", "2",
                                       "--workspace", str(workspace.root)])
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("freed "), result.output
    assert not workspace.run_dir(runs[0].id).exists() and workspace.run_dir(runs[4].id).is_dir()
    assert len(workspace.list_runs(100)) == 13
    assert [p.version for p in workspace.list_pipelines()] == ["1", "6", "7"]
    assert not (workspace.root / "snapshots" / "mini_pipeline" / "2").exists()
    assert all(path.stat().st_nlink > 1 for path in (workspace.root / "objects").iterdir())  # none orphaned
    assert all(workspace.get_model("m", version).path.is_dir() for version in (1, 2))
    assert workspace.get_deployment("live").model_version == 2
    again = api.submit(workspace, "mini-pipeline", version="1")
    assert again.status == "Completed" and all(step.reused_from == runs[4].id for step in again.steps)
    assert Path(again.outputs["model"]).is_dir()


def test_gc_removes_nothing_while_a_run_is_going(busy, tmp_path):
    """A run's next step may reuse the outputs of a run gc would remove: gc waits for no run, it refuses."""
    import subprocess
    import sys

    workspace, runs = busy
    going = runs[-1].id
    workspace.db.execute("UPDATE runs SET status = 'Running', ended_at = NULL WHERE id = ?", (going,))
    workspace.db.commit()
    lock = workspace.run_dir(going) / "owner.lock"  # its owner is alive: the run is not an orphan
    owner = subprocess.Popen([sys.executable, "-c", "import pathlib, sys, time; from amlops.locks import FileLock; "
                              "FileLock(pathlib.Path(sys.argv[1])).acquire(timeout_s=5); print('held', flush=True); "
                              "time.sleep(60)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        before = _state(workspace)
        result = CliRunner().invoke(main, ["gc", "--keep-runs", "10", "--workspace", str(workspace.root)])
        assert result.exit_code != 0 and f"run {going} is Running" in result.output
        assert "Traceback" not in result.output and _state(workspace) == before
    finally:
        owner.kill()
        owner.wait()
