"""The local workspace is found like git finds its repository (walk up to the repository root)."""
import os
import subprocess
import sys
from pathlib import Path

from amlops.workspace.local.discovery import find_workspace


def _repository(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "training" / "src").mkdir(parents=True)
    return root


def test_the_nearest_workspace_up_to_the_repository_root_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLOPS_WORKSPACE", raising=False)
    root = _repository(tmp_path)
    (root / ".amlops").mkdir()
    assert find_workspace(root / "training" / "src") == root / ".amlops"
    (root / "training" / ".amlops").mkdir()
    assert find_workspace(root / "training" / "src") == root / "training" / ".amlops"


def test_without_a_workspace_a_new_one_goes_to_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLOPS_WORKSPACE", raising=False)
    root = _repository(tmp_path)
    assert find_workspace(root / "training" / "src") == root / ".amlops"


def test_the_walk_stops_at_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLOPS_WORKSPACE", raising=False)
    (tmp_path / ".amlops").mkdir()  # outside the repository: another project's workspace
    root = _repository(tmp_path)
    assert find_workspace(root / "training") == root / ".amlops"


def test_outside_a_repository_the_current_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLOPS_WORKSPACE", raising=False)
    assert find_workspace(tmp_path) == tmp_path / ".amlops"


def test_the_environment_variable_wins(tmp_path, monkeypatch):
    root = _repository(tmp_path)
    (root / ".amlops").mkdir()
    monkeypatch.setenv("AMLOPS_WORKSPACE", str(tmp_path / "elsewhere"))
    assert find_workspace(root / "training") == tmp_path / "elsewhere"


def _amlops(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AMLOPS_WORKSPACE"}
    return subprocess.run([sys.executable, "-m", "amlops", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_runs_made_from_the_root_are_listed_from_a_subfolder(tmp_path, mini_project):
    root = _repository(tmp_path)
    published = _amlops(root, "publish", str(mini_project / "pipeline.yml"))
    assert published.returncode == 0, published.stderr
    submitted = _amlops(root, "submit", "mini-pipeline")
    assert submitted.returncode == 0, submitted.stderr
    run_id = next(line.split()[1].rstrip(":") for line in submitted.stdout.splitlines() if line.startswith("run "))
    listed = _amlops(root / "training", "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    assert not (root / "training" / ".amlops").exists()
