"""Cancelling a task as the agent does (Agent.Sdk ProcessInvoker): SIGINT, SIGTERM 7.5 s later, then the tree is
killed 2.5 s later. Real node runs the real launcher and the real amlops runtime; the launcher's Windows branch,
which this machine cannot run, is covered by node's test runner (launcher.test.js)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devops_agent import REPO, Agent
from package_index import PackageIndex, closed_port, make_wheel
from test_devops_launcher import environment_of, stage_fake
from test_devops_launcher_network import isolated, run

WAITING_SMOKE_TEST = {"readinessTimeoutSeconds": "600"}


class Canceller:
    """Sends `signals` to the launcher once `trigger` shows in its output; times the rest of the step."""

    def __init__(self, trigger: str, signals: tuple[int, ...]):
        self.trigger, self.signals = trigger, signals
        self.sent_at: float | None = None

    def __call__(self, process: subprocess.Popen, line: str) -> None:
        if self.sent_at is None and self.trigger in line:
            self.sent_at = time.monotonic()
            for number in self.signals:
                process.send_signal(number)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM", "SIGINT+SIGTERM"])
def test_a_running_task_ends_cancelled_within_5_s(agent: Agent, staged, signals) -> None:
    inputs = dict(WAITING_SMOKE_TEST, scoringUri=f"http://127.0.0.1:{closed_port()}/score")
    canceller = Canceller("calling the scoring service", signals)
    result = agent.run(staged["AmlSmokeTest"], inputs, on_line=canceller)
    ended = time.monotonic()
    assert canceller.sent_at is not None, result.text()
    assert result.result == "Cancelled", result.text()
    assert ended - canceller.sent_at < 5
    assert "stopped without a result" not in result.text() and "delete" not in result.message


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_cancel_during_the_install_completes_and_leaves_no_lock(tmp_path: Path, sources: Path, number) -> None:
    agent = Agent(work=tmp_path / "work", tools=tmp_path / "tools", sources=sources)
    task = stage_fake(tmp_path / "staged" / "AmlSmokeTest", requires=("amlops-dep",))
    index_files = tmp_path / "index"
    make_wheel(index_files / "amlops-dep", "amlops-dep", "1.0", {"amlops_dep/__init__.py": ""})
    index = PackageIndex(index_files, delay_s=30).start()  # the download hangs: the install is in flight
    canceller = Canceller("preparing the Python environment", (number,))
    try:
        result = run(agent, task, isolated(tmp_path, "pip", PIP_INDEX_URL=index.url()), on_line=canceller)
        ended = time.monotonic()
        assert result.result == "Cancelled", result.text()
        assert ended - canceller.sent_at < 5
        assert not Path(f"{environment_of(agent, task)}.lock").exists()
        assert not (environment_of(agent, task) / "amlops-ready.json").exists()
        index.delay_s = 0
        assert run(agent, task, isolated(tmp_path, "pip", PIP_INDEX_URL=index.url())).result == "Succeeded"
    finally:
        index.stop()


def test_the_launchers_platform_branches_under_node_test_runner() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--test", str(REPO / "tests" / "devops" / "launcher.test.js")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


# -- the Azure ML job's cancel: requested, not awaited ------------------------------------------------------------
class _Poller:
    def result(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cancel was awaited")


class _Jobs:
    """azure-ai-ml's JobOperations as the waiter uses it; `get` is interrupted as SIGINT would interrupt it."""

    def __init__(self):
        self.cancelled: list[str] = []

    def get(self, name: str) -> Any:
        raise KeyboardInterrupt

    def begin_cancel(self, name: str) -> _Poller:
        self.cancelled.append(name)
        return _Poller()


def test_an_interrupted_azure_wait_requests_the_cancel_without_waiting() -> None:
    from amlops.workspace.azure.runs import Waiter

    jobs = _Jobs()
    workspace = type("Workspace", (), {"ml_client": type("Client", (), {"jobs": jobs})(), "poll_interval_s": 10})()
    events: list[tuple[str, str, str]] = []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        Waiter(workspace, "job-1", lambda *event: events.append(event), timeout_s=None).wait()
    assert jobs.cancelled == ["job-1"] and time.monotonic() - started < 1
    assert any("cancel requested for job job-1" in text for _, _, text in events)
