"""Fixtures for the task runtime tests: the staged task folders (the wheel is built once per session)
and an agent whose tools directory is shared by the session, so the launcher's cold install of the
Python environment happens once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devops_agent import REPO, Agent


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    from amlops.packaging.stage import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def staged(tmp_path_factory, wheel) -> dict[str, Path]:
    from amlops.packaging.stage import stage_all

    return stage_all(tmp_path_factory.mktemp("tasks"), wheel)


@pytest.fixture(scope="session")
def agent_tools(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("agent-tools")


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """The job's checkout: a copy of the repository's sample training project."""
    root = tmp_path / "s"
    shutil.copytree(REPO / "training", root / "training",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return root


@pytest.fixture
def agent(tmp_path: Path, agent_tools: Path, sources: Path) -> Agent:
    return Agent(work=tmp_path, tools=agent_tools, sources=sources)
