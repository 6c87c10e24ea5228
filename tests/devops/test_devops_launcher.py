"""extension/launcher.js: the cached environment (reuse, lock, stale lock, broken cache, failed install).

Most tests stage a tiny stand-in wheel (an `amlops` whose task runtime only reports success), so each
can start from an empty tools directory without paying for the real dependencies."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from devops_agent import REPO, Agent

pytestmark = pytest.mark.slow

FAKE_MAIN = '''import os, sys
print("amlops 0.0.1: fake " + sys.argv[1], flush=True)
if os.environ.get("FAKE_MODE") == "crash":
    sys.exit(3)
print("##vso[task.complete result=Succeeded;]fake done", flush=True)
'''
SMOKE = {"scoringUri": "http://127.0.0.1:9/score"}


def _fake_wheel(folder: Path) -> Path:
    files = {"amlops/__init__.py": "", "amlops/devops/__init__.py": "", "amlops/devops/__main__.py": FAKE_MAIN,
             "amlops-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: amlops\nVersion: 0.0.1\n",
             "amlops-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                             "Tag: py3-none-any\n"}
    record = []
    path = folder / "amlops-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            data = text.encode()
            archive.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("amlops-0.0.1.dist-info/RECORD,,")
        archive.writestr("amlops-0.0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def fake_task(tmp_path: Path) -> Path:
    folder = tmp_path / "staged" / "AmlSmokeTest"
    folder.mkdir(parents=True)
    shutil.copy2(REPO / "tasks" / "AmlSmokeTest" / "task.json", folder / "task.json")
    shutil.copy2(REPO / "extension" / "launcher.js", folder / "launcher.js")
    (folder / "constraints.txt").write_text("")
    _fake_wheel(folder)
    return folder


@pytest.fixture
def fresh_agent(tmp_path: Path, sources: Path) -> Agent:
    return Agent(work=tmp_path / "work", tools=tmp_path / "tools", sources=sources)


def _environment(agent: Agent) -> Path:
    return agent.tools / "amlops" / f"0.0.1-py{sys.version_info[0]}.{sys.version_info[1]}"


def _succeeded(run) -> None:
    assert run.exit_code == 0 and run.result == "Succeeded", run.text() + run.stderr


def test_second_start_reuses_the_environment(agent: Agent, staged) -> None:
    first = agent.run(staged["AmlSmokeTest"], {})
    second = agent.run(staged["AmlSmokeTest"], {})
    for run in (first, second):  # the task itself fails fast (no scoringUri), after starting
        assert run.exit_code == 0 and run.first_line_seconds is not None, run.text()
    assert "preparing the Python environment" not in second.stdout
    markers = list((agent.tools / "amlops").glob("*/amlops-ready.json"))
    assert len(markers) == 1 and json.loads(markers[0].read_text())["fingerprint"]


def test_concurrent_jobs_install_once(fresh_agent: Agent, fake_task: Path) -> None:
    runs = []
    threads = [threading.Thread(target=lambda: runs.append(fresh_agent.run(fake_task, SMOKE))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in runs:
        _succeeded(run)
    assert sum("preparing the Python environment" in run.stdout for run in runs) == 1
    assert not Path(f"{_environment(fresh_agent)}.lock").exists()


def test_a_lock_left_by_a_dead_job_is_broken(fresh_agent: Agent, fake_task: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = Path(f"{_environment(fresh_agent)}.lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "removing an abandoned lock" in run.stdout and not lock.exists()


def test_a_live_lock_is_waited_for(fresh_agent: Agent, fake_task: Path) -> None:
    lock = Path(f"{_environment(fresh_agent)}.lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    threading.Timer(2.0, lock.unlink).start()
    started = time.monotonic()
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "waiting for another job" in run.stdout and time.monotonic() - started >= 2.0


def test_a_broken_environment_is_rebuilt(fresh_agent: Agent, fake_task: Path) -> None:
    _succeeded(fresh_agent.run(fake_task, SMOKE))
    for package in _environment(fresh_agent).rglob("site-packages/amlops"):
        shutil.rmtree(package)
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "is broken" in run.stdout and "rebuilding it" in run.stdout


def test_an_environment_without_marker_is_rebuilt(fresh_agent: Agent, fake_task: Path) -> None:
    _succeeded(fresh_agent.run(fake_task, SMOKE))
    environment = _environment(fresh_agent)
    (environment / "amlops-ready.json").unlink()
    (environment / "half-done").write_text("")
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "preparing the Python environment" in run.stdout and not (environment / "half-done").exists()


def test_a_failed_install_is_a_task_error(fresh_agent: Agent, fake_task: Path) -> None:
    next(fake_task.glob("*.whl")).write_bytes(b"not a zip file")
    run = fresh_agent.run(fake_task, SMOKE)
    assert run.exit_code == 0 and run.result == "Failed", run.text()
    assert "installing amlops failed" in run.message and "Full log:" in run.message
    assert not (_environment(fresh_agent) / "amlops-ready.json").exists()


def test_a_runtime_that_dies_without_a_result_is_reported(fresh_agent: Agent, fake_task: Path) -> None:
    run = fresh_agent.run(fake_task, SMOKE, extra={"FAKE_MODE": "crash"})
    assert run.exit_code == 0 and run.result == "Failed", run.text()
    assert "stopped without a result (exit code 3" in run.message
