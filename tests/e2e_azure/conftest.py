"""Fixtures for the end-to-end runs of the tasks against the Azure fakes: the staged task folders and an agent
tools directory whose Python environment the launcher has prepared (once per session, before any test points
the agent at the test cloud's proxy).

The fakes and harnesses of tests/devops, tests/azure and tests/aci are reused, not copied: their folders go on
sys.path here (the shared paths come from tests/support.py).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from support import REPO, TESTS

for _folder in ("devops", "azure", "aci"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.append(str(TESTS / _folder))


@pytest.fixture(scope="session")
def staged_tasks(tmp_path_factory) -> dict[str, Path]:
    from amlops.packaging.stage import build_wheel, stage_all

    wheel = build_wheel(tmp_path_factory.mktemp("e2e-wheel"))
    return stage_all(tmp_path_factory.mktemp("e2e-tasks"), wheel)


@pytest.fixture(scope="session")
def prepared_tools(tmp_path_factory, staged_tasks) -> Path:
    """The agent's tools directory after an earlier job: the launcher has installed its Python environment.

    The install needs the package index; the tasks under test then run with the test cloud's proxy, which
    tunnels only to that cloud. So one launcher run, with the agent's ordinary environment, comes first."""
    from devops_agent import Agent

    tools = tmp_path_factory.mktemp("e2e-agent-tools")
    work = tmp_path_factory.mktemp("e2e-warmup")
    sources = work / "s"
    sources.mkdir()
    # The launcher's environment for `target: azure` (the `azure` extras) and the smoke test's (none); each task
    # then fails on its inputs, which does not matter here.
    agent = Agent(work=work, tools=tools, sources=sources)
    run = agent.run(staged_tasks["AmlPublishPipeline"], {"target": "azure"}, step="warmup")
    agent.run(staged_tasks["AmlSmokeTest"], {"scoringUri": "http://127.0.0.1:9/score"})
    assert len(list((tools / "amlops").glob("env-*/amlops-ready.json"))) == 2, \
        f"the launcher did not prepare its environment:\n{run.stdout}\n{run.stderr}"
    return tools


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """The job's checkout: a copy of the repository's sample training project."""
    root = tmp_path / "s"
    shutil.copytree(REPO / "training", root / "training",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return root
