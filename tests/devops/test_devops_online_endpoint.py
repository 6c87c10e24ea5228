"""AmlDeployOnlineEndpoint as the agent runs it (real node, launcher and wheel) with target local: a rollout, then
a rollout whose smoke test fails and is rolled back; outputs set, the key a masked secret that never leaks."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from amlops.deploy.online_endpoint.local import LocalEndpoints
from amlops.workspace.local.workspace import LocalWorkspace
from devops_agent import Agent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "online"))
from online_support import request_file, scoring_folder, workspace_with_model  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path):
    if not shutil.which("caddy"):
        pytest.skip("caddy (apt-get install caddy)")
    ws = workspace_with_model(tmp_path / "aml")
    yield ws
    endpoints = LocalEndpoints(ws, on_info=lambda line: None)
    for endpoint in endpoints.list():
        endpoints.delete(endpoint.name)


def test_rollout_and_rollback_through_the_task(agent: Agent, staged, sources: Path, workspace: LocalWorkspace):
    scoring_folder(sources / "scoring", "good", 0.1)
    scoring_folder(sources / "scoring", "broken", broken=True)
    request_file(sources / "scoring")
    inputs = {"target": "local", "localWorkspace": str(workspace.root), "modelName": "driver",
              "endpointName": "task-ep", "requestFile": "scoring/request.json", "smokeRequests": "3",
              "readinessTimeoutSeconds": "30"}
    task = staged["AmlDeployOnlineEndpoint"]
    first = agent.run(task, {**inputs, "deploymentName": "blue", "scoringFolder": "scoring/good"}, step="prod")
    assert first.result == "Succeeded", first.text()
    key = LocalEndpoints(workspace).key("task-ep")
    assert first.outputs["scoringUri"].startswith("http://127.0.0.1:") and first.outputs["deploymentName"] \
        == "blue" and first.outputs["previousDeployment"] == ""
    assert key in first.secrets and first.leaks(key) == []

    second = agent.run(task, {**inputs, "deploymentName": "green", "scoringFolder": "scoring/broken"}, step="prod")
    assert second.result == "Failed" and second.exit_code == 0
    assert "smoke test of deployment green alone failed" in second.message
    assert "traffic is back to blue 100% and deployment green was deleted" in second.message
    assert LocalEndpoints(workspace).get("task-ep").traffic == {"blue": 100}
