"""A name that is a path, through the real node launcher: one failed line, nothing written (issue 12)."""
from __future__ import annotations

from pathlib import Path

import pytest

from devops_agent import Agent

pytestmark = pytest.mark.slow


def test_pipeline_name_that_is_a_path_publishes_nothing(agent: Agent, staged, sources: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "1").mkdir(parents=True)
    (victim / "1" / "keep.txt").write_text("precious")
    workspace = tmp_path / "ws"
    run = agent.run(staged["AmlPublishPipeline"], {"target": "local", "localWorkspace": str(workspace),
                                                   "pipelineName": "../victim", "pipelineVersion": "1"})
    assert run.exit_code == 0 and run.result == "Failed", run.text()
    assert run.message.startswith("input 'pipelineName' '../victim': a pipeline name may contain only"), run.text()
    assert (victim / "1" / "keep.txt").read_text() == "precious" and sorted(victim.rglob("*")) == \
        [victim / "1", victim / "1" / "keep.txt"]
    assert not workspace.exists()
