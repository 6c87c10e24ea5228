"""End to end with `target: local`: the four staged tasks in one job, each fed the previous task's output
variables through `$(step.variable)` macros as the agent does: publish, run (train, evaluate, gate,
register), deploy (the real Azure ML inference server on loopback) and smoke-test the sample model."""
from __future__ import annotations

import uuid

import pytest

from devops_agent import Agent

pytestmark = pytest.mark.slow


def _stop_deployments(agent: Agent) -> None:
    from amlops.processes import stop_process_group
    from amlops.workspace.local.workspace import LocalWorkspace

    workspace = agent.temp / "amlops-workspace"
    if workspace.exists():
        for deployment in LocalWorkspace(workspace).list_deployments():
            stop_process_group(deployment.pid)


def test_four_tasks_in_sequence(agent: Agent, staged) -> None:
    deployment = f"smoke-{uuid.uuid4().hex[:6]}"
    steps = [
        ("publish", "AmlPublishPipeline", {"target": "local"}),
        ("run", "AmlRunPipeline", {"target": "local", "pipelineName": "$(publish.pipelineName)",
                                   "pipelineVersion": "$(publish.pipelineVersion)"}),
        ("deploy", "AmlDeployAci", {"target": "local", "modelName": "$(run.modelName)",
                                    "modelVersion": "$(run.modelVersion)", "deploymentName": deployment}),
        ("smoke", "AmlSmokeTest", {"target": "local", "scoringUri": "$(deploy.scoringUri)",
                                   "scoringKey": "$(deploy.scoringKey)", "requestCount": "10"}),
    ]
    runs = {}
    try:
        for step, task, inputs in steps:
            run = runs[step] = agent.run(staged[task], inputs, step=step, timeout=1500)
            assert run.exit_code == 0 and run.result == "Succeeded", f"{step}:\n{run.text()}\n{run.stderr}"
            assert run.summaries, step
    finally:
        _stop_deployments(agent)
    publish, train, deploy, smoke = (runs[s] for s in ("publish", "run", "deploy", "smoke"))
    assert publish.outputs["pipelineVersion"] == "4711"  # $(Build.BuildId), the default
    assert train.outputs["runStatus"] == "Completed" and train.outputs["modelRegistered"] == "true"
    assert "auc" in train.outputs["metrics"] and train.outputs["modelVersion"] == "1"
    assert deploy.outputs["scoringUri"].startswith("http://127.0.0.1:")
    assert smoke.outputs["smokeTestPassed"] == "true" and float(smoke.outputs["latencyP95Ms"]) > 0
    assert "auc" in train.summaries[0] and "p95" in smoke.summaries[0]
    key = deploy.outputs.get("scoringKey", "")
    if key:  # a secret output: masked wherever it could show
        assert all(not r.leaks(key) and key not in r.text() for r in runs.values())


def test_kill_9_of_the_run_pipeline_task_mid_step_leaves_no_step_process(agent: Agent, staged) -> None:
    """The agent killing AmlRunPipeline (node launcher, then Python, then each step's supervisor) with
    SIGKILL mid-step: within 5 s no process of the step's tree (child, setsid'd grandchild, all ignoring
    SIGTERM) is alive, the run is Failed, and the next run of the task succeeds."""
    import os
    import shutil
    import signal
    import subprocess

    import psutil

    from amlops import api
    from amlops.workspace.local.workspace import LocalWorkspace
    from test_step_processes import alive, step_pids, tree_project, wait_dead

    if os.name == "nt":
        pytest.skip("POSIX signals")
    workspace = LocalWorkspace(agent.temp / "amlops-workspace")
    pipeline = api.publish(workspace, tree_project(agent.sources / "tree"))
    pids = agent.temp / "tree-pids.txt"
    inputs = {"target": "local", "pipelineName": pipeline.name, "runEvaluation": "false", "modelName": "tree",
              "modelOutput": "out", "metricsOutput": ""}
    task = staged["AmlRunPipeline"]
    env = agent.environment(task, inputs, extra={"TREE_PIDS": str(pids), "TREE_IGNORE_TERM": "1",
                                                 "AMLOPS_STOP_GRACE_S": "2"})
    node = subprocess.Popen([shutil.which("node") or "node", str(task / "launcher.js")], cwd=agent.sources, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family = []
    try:
        family = step_pids(pids, timeout_s=600)  # the first run of the session installs the environment
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        assert wait_dead(family, 5) == [], "step processes outlived a kill -9 of the task"
        run = LocalWorkspace(workspace.root).list_runs()[0]
        assert run.status == "Failed" and {s.status for s in run.steps} == {"Canceled"}, run
    finally:
        for process in family:
            if alive([process]):
                process.kill()
        if node.poll() is None:
            node.kill()
    pids.unlink()
    again = agent.run(task, inputs, step="again", extra={"TREE_PIDS": str(pids), "TREE_SLEEP": "0"})
    assert again.result == "Succeeded" and again.outputs["runStatus"] == "Completed", again.text()
    assert all(not psutil.pid_exists(p.pid) or not alive([p]) for p in family)
