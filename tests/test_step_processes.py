"""Step processes die with their run: kill -9 of `amlops submit`, timeouts, Ctrl-C and SIGTERM stop the
whole process tree of a step (children, a setsid'd grandchild, processes ignoring SIGTERM); run liveness
is not fooled by a reused pid."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from amlops import api
from amlops.workspace.local.workspace import LocalWorkspace

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")

TREE = '''
"""Spawns a child, which spawns a great-grandchild in its own session; all ignore SIGTERM if asked."""
import os, signal, subprocess, sys, time
from pathlib import Path

level = int(sys.argv[1]) if len(sys.argv) > 1 else 0
if os.environ.get("TREE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = Path(os.environ["TREE_PIDS"])
with open(pids, "a") as f:
    f.write(f"{os.getpid()} {level}\\n")
if level < 2:
    subprocess.Popen([sys.executable, __file__, str(level + 1)], start_new_session=(level == 1))
print(f"level {level} started", flush=True)
time.sleep(float(os.environ.get("TREE_SLEEP", "120")))
'''


def tree_project(root: Path) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "tree.py").write_text(TREE)
    (root / "step.yml").write_text(textwrap.dedent("""\
        $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
        type: command
        name: tree
        version: "1"
        code: ./code
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        outputs:
          out:
            type: uri_folder
        command: python tree.py
        """))
    (root / "pipeline.yml").write_text(textwrap.dedent("""\
        $schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
        type: pipeline
        display_name: tree-pipeline
        experiment_name: tree
        outputs:
          out:
            type: uri_folder
        jobs:
          tree:
            type: command
            component: ./step.yml
            outputs:
              out: ${{parent.outputs.out}}
        """))
    return root / "pipeline.yml"


def step_pids(pids_file: Path, count: int = 3, timeout_s: float = 30) -> list[psutil.Process]:
    """The step's processes (by pid and start time), once all `count` have started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = pids_file.read_text().split("\n") if pids_file.exists() else []
        entries = [line.split() for line in lines if line.strip()]
        if len(entries) >= count:
            return [psutil.Process(int(pid)) for pid, _ in entries]
        time.sleep(0.1)
    raise AssertionError(f"the step never started its {count} processes")


def alive(processes: list[psutil.Process]) -> list[int]:
    return [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_dead(processes: list[psutil.Process], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(processes)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch):
    ws_path = tmp_path / "ws"
    api.publish(LocalWorkspace(ws_path), tree_project(tmp_path / "project"))
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("TREE_PIDS", str(pids))
    yield ws_path, pids
    if pids.exists():  # never leave a process behind, whatever the test found
        for line in pids.read_text().splitlines():
            try:
                psutil.Process(int(line.split()[0])).kill()
            except psutil.Error:
                pass


def submit(ws_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "amlops", "submit", "tree-pipeline", "--workspace", str(ws_path),
                             "--no-reuse", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def test_kill_9_of_submit_kills_the_step_its_child_and_its_setsid_grandchild(tree):
    ws_path, pids = tree
    process = submit(ws_path, env={"TREE_IGNORE_TERM": "1", "AMLOPS_STOP_GRACE_S": "2"})
    family = step_pids(pids)
    process.kill()
    process.wait(10)
    assert wait_dead(family, 5) == [], "step processes outlived a kill -9 of amlops submit"
    run = LocalWorkspace(ws_path).list_runs()[0]
    assert run.status == "Failed" and "ended before the run finished" in run.error
    assert {s.status for s in run.steps} == {"Canceled"}
    pids.unlink()
    after = submit(ws_path, env={"TREE_SLEEP": "0"})
    output = after.communicate(timeout=60)[0]
    assert after.returncode == 0, output
    assert LocalWorkspace(ws_path).list_runs()[0].status == "Completed"


@pytest.mark.parametrize("how", ["timeout", "SIGINT", "SIGTERM"])
def test_a_step_ignoring_sigterm_dies_on_timeout_ctrl_c_and_sigterm(tree, how):
    ws_path, pids = tree
    args = ["--timeout", "2"] if how == "timeout" else []
    process = submit(ws_path, *args, env={"TREE_IGNORE_TERM": "1", "AMLOPS_STOP_GRACE_S": "1"})
    family = step_pids(pids)
    if how != "timeout":
        process.send_signal(getattr(signal, how))
    output = process.communicate(timeout=60)[0]
    assert alive(family) == [], "a step ignoring SIGTERM survived while the command said Canceled"
    assert process.returncode == 130, output
    run = LocalWorkspace(ws_path).list_runs()[0]
    assert run.status == "Canceled" and {s.status for s in run.steps} == {"Canceled"}
    assert "Traceback" not in output


def test_background_processes_a_finished_step_left_behind_are_stopped(tree):
    ws_path, pids = tree
    # the step's main process exits at once; its child and setsid'd grandchild would sleep on
    (ws_path.parent / "project" / "code" / "tree.py").write_text(TREE.replace(
        'time.sleep(float(os.environ.get("TREE_SLEEP", "120")))',
        'while level == 0 and len(pids.read_text().splitlines()) < 3: time.sleep(0.05)\n'
        'time.sleep(0 if level == 0 else 120)'))
    api.publish(LocalWorkspace(ws_path), ws_path.parent / "project" / "pipeline.yml")
    process = submit(ws_path)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    recorded = [int(line.split()[0]) for line in pids.read_text().splitlines()]
    assert len(recorded) == 3, "the step started its child and grandchild"
    time.sleep(1)
    assert [pid for pid in recorded if _tree_process(pid)] == [], "the step's background processes outlived it"


def _tree_process(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return "tree.py" in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_run_whose_owner_died_is_failed_even_when_its_pid_was_reused(tree):
    ws_path, pids = tree
    process = submit(ws_path)
    step_pids(pids)
    process.kill()
    process.wait(10)
    db = sqlite3.connect(ws_path / "workspace.db")
    # the dead owner's pid now belongs to a live process (this one): the pid alone would say Running
    db.execute("UPDATE runs SET owner_pid = ?, status = 'Running'", (os.getpid(),))
    db.commit()
    db.close()
    run = LocalWorkspace(ws_path).list_runs()[0]
    assert run.status == "Failed"


def test_a_run_being_executed_is_not_taken_for_an_orphan(tree):
    ws_path, pids = tree
    process = submit(ws_path)
    step_pids(pids)
    try:
        assert LocalWorkspace(ws_path).list_runs()[0].status == "Running"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_a_zombie_counts_as_stopped(monkeypatch):
    """A server started by an earlier command is adopted by init, which may reap it only seconds after it
    exited: stopping it must not wait for that (psutil.wait_procs did, 2 s of every `--teardown`)."""
    from amlops import processes

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    monkeypatch.setattr(processes, "_reap", lambda pid: None)  # as if it were not ours to reap
    try:
        process = psutil.Process(child.pid)
        while process.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        assert processes._wait_ended([process], timeout_s=30) == []
    finally:
        child.wait()
