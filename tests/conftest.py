import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SPECS = REPO.parent / "shared" / "specs"


@pytest.fixture
def mini_project(tmp_path: Path) -> Path:
    """A copy of tests/mini_project: a two-step pipeline of pure-Python steps, fast to run."""
    project = tmp_path / "project"
    shutil.copytree(TESTS / "mini_project", project)
    return project


@pytest.fixture
def workspace(tmp_path: Path):
    from amlops.workspace.local import LocalWorkspace

    return LocalWorkspace(tmp_path / "ws")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
