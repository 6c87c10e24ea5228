import shutil
from pathlib import Path

import pytest

from hostile_servers import servers  # noqa: F401 - the fixture of misbehaving HTTP servers
from support import TESTS


@pytest.fixture
def mini_project(tmp_path: Path) -> Path:
    """A copy of tests/mini_project: a two-step pipeline of pure-Python steps, fast to run."""
    project = tmp_path / "project"
    shutil.copytree(TESTS / "mini_project", project)
    return project


@pytest.fixture
def workspace(tmp_path: Path):
    from amlops.workspace.local.workspace import LocalWorkspace

    return LocalWorkspace(tmp_path / "ws")
