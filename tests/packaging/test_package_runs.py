"""The staged tasks run from the unzipped package, not from the source tree: tests/devops's agent harness and its
run of the sample pipeline's four task steps (publish -> run, gate, register -> deploy -> smoke test,
`target: local`), pointed at the task folders unzipped from the .vsix."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from support import REPO

sys.path.insert(0, str(REPO / "tests" / "devops"))  # the harness lives there; tests/devops has no __init__.py
from devops_agent import Agent  # noqa: E402
from test_devops_e2e import \
    test_the_sample_pipelines_four_task_steps_as_written as four_tasks_in_sequence  # noqa: E402

pytestmark = pytest.mark.slow


def test_staged_tasks_run_from_the_unzipped_package(unzipped: Path, tmp_path: Path, tmp_path_factory) -> None:
    staged = {folder.name: folder for folder in (unzipped / "tasks").iterdir()}
    assert sorted(staged) == sorted(["AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci", "AmlSmokeTest",
                                     "AmlDeployOnlineEndpoint"])
    sources = tmp_path / "s"
    shutil.copytree(REPO / "training", sources / "training",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    tools = tmp_path_factory.mktemp("agent-tools")
    four_tasks_in_sequence(Agent(work=tmp_path, tools=tools, sources=sources), staged)
    # The launcher's environment was built from the wheel and constraints inside the package.
    # One per set of extras: `local` for the three workspace tasks, none for the smoke test.
    markers = sorted((tools / "amlops").glob("env-*/amlops-ready.json"))
    assert sorted(marker.parent.name.rsplit("-", 1)[1] for marker in markers) == ["core", "local"]
    folder = staged["AmlSmokeTest"]
    [wheel] = folder.glob("amlops-*.whl")
    digest = hashlib.sha256(b"".join(path.read_bytes() + b"\0" for path in (
        wheel, folder / "constraints.txt", folder / "launcher.js"))).hexdigest()[:16]
    assert {json.loads(marker.read_text())["fingerprint"] for marker in markers} == {digest}
