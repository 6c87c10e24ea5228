"""`amlops run`: the whole flow on the sample project, as the README's first command runs it."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from amlops.workspace.local.workspace import LocalWorkspace
from support import REPO

pytestmark = pytest.mark.slow


def amlops(*args: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amlops", *args, "--workspace", str(workspace)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
def workspace(tmp_path: Path):
    path = tmp_path / "ws"
    yield path
    amlops("deployments", "delete", "safe-driver", workspace=path)


def test_the_whole_flow_then_the_gate(workspace: Path, tmp_path: Path):
    first = amlops("run", "--quiet", workspace=workspace)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ("publish", "train", "register", "deploy", "smoke test"):
        assert f"<== {stage}: ok" in first.stdout
    assert "registered safe-driver-model:1" in first.stdout and "PASSED" in first.stdout
    ws = LocalWorkspace(workspace)
    deployment = ws.get_deployment("safe-driver")
    request = urllib.request.Request(deployment.scoring_uri, headers={"Content-Type": "application/json"},
                                     data=(REPO / "training/scoring/sample-request.json").read_bytes())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert len(json.loads(response.read())["predictions"]) == 3
    auc = float(ws.get_model("safe-driver-model", 1).tags["auc"])
    assert auc > 0.7

    again = amlops("run", "--quiet", workspace=workspace)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "not better: auc" in again.stdout and "model not registered" in again.stdout
    assert [m.version for m in ws.list_models("safe-driver-model")] == [1]

    forced = amlops("run", "--quiet", "--no-evaluation", workspace=workspace)
    assert forced.returncode == 0 and "evaluation is off" in forced.stdout
    assert ws.get_deployment("safe-driver").model_version == 2

    better = tmp_path / "better.csv"
    subprocess.run([sys.executable, str(REPO / "training/src/generate_data.py"), "--rows", "20000",
                    "--signal", "2.0", "--out", str(better)], check=True, capture_output=True)
    improved = amlops("run", "--quiet", "--set", f"inputs.training_data={better}", workspace=workspace)
    assert improved.returncode == 0, improved.stdout + improved.stderr
    assert "registered safe-driver-model:3: better: auc" in improved.stdout
    assert float(ws.get_model("safe-driver-model", 3).tags["auc"]) > auc
    assert ws.get_deployment("safe-driver").model_version == 3

    listed = amlops("deployments", "list", workspace=workspace)
    assert "Healthy" in listed.stdout and "safe-driver-model:3" in listed.stdout
    deleted = amlops("deployments", "delete", "safe-driver", workspace=workspace)
    assert deleted.returncode == 0 and ws.list_deployments() == []


def test_a_failing_stage_stops_the_flow_with_exit_code_1(workspace: Path):
    result = amlops("run", "--quiet", "--set", "inputs.num_leaves=1", workspace=workspace)
    assert result.returncode == 1
    assert "<== train: FAILED" in result.stdout and "FAILED" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "deploy" not in result.stdout.split("summary")[1].split("stages")[1].split("\n")[0]
