"""extension/launcher.js: the cached environment (reuse, lock, stale lock, broken cache, failed install).

Most tests stage a tiny stand-in wheel (an `amlops` whose task runtime only reports success), so each
can start from an empty tools directory without paying for the real dependencies."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devops_agent import REPO, Agent
from package_index import make_wheel

pytestmark = pytest.mark.slow

FAKE_MAIN = '''import os, sys, time
print("amlops 0.0.1: fake " + sys.argv[1], flush=True)
proxy = "set" if os.environ.get("HTTPS_PROXY") else "unset"
print("proxy: " + proxy + ", ca: " + os.environ.get("SSL_CERT_FILE", ""), flush=True)
if os.environ.get("FAKE_MODE") == "crash":
    sys.exit(3)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
deadline = time.monotonic() + 120
wait_for = os.environ.get("FAKE_WAIT_FOR")
while wait_for and not os.path.exists(wait_for) and time.monotonic() < deadline:
    time.sleep(0.05)
print("##vso[task.complete result=Succeeded;]fake done", flush=True)
'''
SMOKE = {"scoringUri": "http://127.0.0.1:9/score"}


def fake_wheel(folder: Path, build: str = "", requires: tuple[str, ...] = ()) -> Path:
    """A stand-in amlops 0.0.1 whose runtime only reports success; `build` changes its bytes, not its version."""
    files = {"amlops/__init__.py": f"BUILD = {build!r}\n", "amlops/devops/__init__.py": "",
             "amlops/devops/__main__.py": FAKE_MAIN}
    return make_wheel(folder, "amlops", "0.0.1", files, requires)


def stage_fake(folder: Path, build: str = "", requires: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True)
    shutil.copy2(REPO / "tasks" / "AmlSmokeTest" / "task.json", folder / "task.json")
    shutil.copy2(REPO / "extension" / "launcher.js", folder / "launcher.js")
    (folder / "constraints.txt").write_text("")
    fake_wheel(folder, build, requires)
    return folder


@pytest.fixture
def fake_task(tmp_path: Path) -> Path:
    return stage_fake(tmp_path / "staged" / "AmlSmokeTest")


@pytest.fixture
def fresh_agent(tmp_path: Path, sources: Path) -> Agent:
    return Agent(work=tmp_path / "work", tools=tmp_path / "tools", sources=sources)


def environments(agent: Agent) -> list[Path]:
    return sorted(path for path in (agent.tools / "amlops").glob("env-*-core") if path.is_dir())


def build_fingerprint(task_dir: Path) -> str:
    """What the launcher keys its environment folder by: the wheel, constraints and launcher bytes."""
    digest = hashlib.sha256()
    for file in (next(task_dir.glob("amlops-*.whl")), task_dir / "constraints.txt", task_dir / "launcher.js"):
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def environment_of(agent: Agent, task_dir: Path, extras: str = "core") -> Path:
    """The launcher's environment folder for this build, the test's Python and `extras`."""
    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return agent.tools / "amlops" / f"env-{build_fingerprint(task_dir)}-{python}-{extras}"


def _succeeded(run) -> None:
    assert run.exit_code == 0 and run.result == "Succeeded", run.text() + run.stderr


def test_second_start_reuses_the_environment(agent: Agent, staged) -> None:
    first = agent.run(staged["AmlSmokeTest"], {})
    ready = sorted((agent.tools / "amlops").glob("env-*/amlops-ready.json"))  # other tests' environments too
    second = agent.run(staged["AmlSmokeTest"], {})
    for run in (first, second):  # the task itself fails fast (no scoringUri), after starting
        assert run.exit_code == 0 and run.first_line_seconds is not None, run.text()
    assert "preparing the Python environment" not in second.stdout
    assert sorted((agent.tools / "amlops").glob("env-*/amlops-ready.json")) == ready, "the second start made another"
    assert ready and all(json.loads(marker.read_text())["fingerprint"] for marker in ready)


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
    assert not Path(f"{environment_of(fresh_agent, fake_task)}.lock").exists()


def test_a_lock_left_by_a_dead_job_is_broken(fresh_agent: Agent, fake_task: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = Path(f"{environment_of(fresh_agent, fake_task)}.lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "removing an abandoned lock" in run.stdout and not lock.exists()


def test_a_live_lock_is_waited_for(fresh_agent: Agent, fake_task: Path) -> None:
    lock = Path(f"{environment_of(fresh_agent, fake_task)}.lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    threading.Timer(2.0, lock.unlink).start()
    started = time.monotonic()
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "waiting for another job" in run.stdout and time.monotonic() - started >= 2.0


def test_a_broken_environment_is_rebuilt(fresh_agent: Agent, fake_task: Path) -> None:
    _succeeded(fresh_agent.run(fake_task, SMOKE))
    for package in environment_of(fresh_agent, fake_task).rglob("site-packages/amlops"):
        shutil.rmtree(package)
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "is broken" in run.stdout and "rebuilding it" in run.stdout


def test_an_environment_without_marker_is_rebuilt(fresh_agent: Agent, fake_task: Path) -> None:
    _succeeded(fresh_agent.run(fake_task, SMOKE))
    environment = environment_of(fresh_agent, fake_task)
    (environment / "amlops-ready.json").unlink()
    (environment / "half-done").write_text("")
    run = fresh_agent.run(fake_task, SMOKE)
    _succeeded(run)
    assert "preparing the Python environment" in run.stdout and not (environment / "half-done").exists()


def test_a_failed_install_is_a_task_error(fresh_agent: Agent, fake_task: Path) -> None:
    next(fake_task.glob("*.whl")).write_bytes(b"not a zip file")
    run = fresh_agent.run(fake_task, SMOKE)
    assert run.exit_code == 0 and run.result == "Failed", run.text()
    assert "installing amlops failed" in run.message and "Install log:" in run.message
    assert not (environment_of(fresh_agent, fake_task) / "amlops-ready.json").exists()


def test_a_runtime_that_dies_without_a_result_is_reported(fresh_agent: Agent, fake_task: Path) -> None:
    run = fresh_agent.run(fake_task, SMOKE, extra={"FAKE_MODE": "crash"})
    assert run.exit_code == 0 and run.result == "Failed", run.text()
    assert "stopped without a result (exit code 3" in run.message
