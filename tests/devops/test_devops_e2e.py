"""End to end with `target: local`: the sample azure-pipelines.yml's four task steps, exactly as written there
(inputs read from the file, its variables and the variable group's filled in, the QA job's `$[ stageDependencies ]`
variables taken from the train step's outputs), run by the real node and launcher as the agent runs them:
publish, run (train, evaluate, gate, register), deploy (the real Azure ML inference server on loopback) and
smoke-test. Then the no-wait path of AmlRunPipeline: `wait: false` waits anyway on the local target, and a step
given `runId` gates that finished run instead of submitting."""
from __future__ import annotations

import json
import re

import pytest

from devops_agent import REPO, Agent
from sample_pipeline import job_steps, load, stage, variables

pytestmark = pytest.mark.slow

# What the project's `amlops` variable group holds (docs/setup.md); the data is uploaded as setup.md says.
VARIABLE_GROUP = {"RESOURCE_GROUP": "amlops-rg", "WORKSPACE_NAME": "amlops-ws", "DATASTORE_NAME": "training_data",
                  "DATAFILE_NAME": "porto_seguro_safe_driver.csv"}
TEMPLATE = re.compile(r"\$\{\{\s*variables\.(\w+)\s*\}\}")
STAGE_OUTPUT = re.compile(r"^\$\[\s*stageDependencies\.\w+\.\w+\.outputs\['(\w+\.\w+)'\]\s*\]$")


def _stop_deployments(agent: Agent) -> None:
    from amlops.processes import stop_process_group
    from amlops.workspace.local.workspace import LocalWorkspace

    workspace = agent.temp / "amlops-workspace"
    if workspace.exists():
        for deployment in LocalWorkspace(workspace).list_deployments():
            stop_process_group(deployment.pid)


def sample_task_steps() -> list[tuple[dict, dict]]:
    """(job variables, step) for every amlops task step of the Train and DeployQA stages, in order."""
    document = load()
    found = []
    for name in ("Train", "DeployQA"):
        for job in stage(document, name)["jobs"]:
            found += [(job.get("variables") or {}, step) for step in job_steps(job)
                      if step.get("task", "").startswith("Aml")]
    return found


def as_written(step: dict, pipeline_variables: dict[str, str], staged) -> tuple[str, dict[str, str]]:
    """The step's task name and inputs, template expressions replaced, and `target: local` where the task has one."""
    task = step["task"].split("@")[0]
    inputs = {name: TEMPLATE.sub(lambda m: pipeline_variables[m.group(1)], str(value).lower()
                                 if isinstance(value, bool) else str(value))
              for name, value in step["inputs"].items()}
    task_inputs = {i["name"] for i in json.loads((staged[task] / "task.json").read_text())["inputs"]}
    if "target" in task_inputs:
        inputs["target"] = "local"
    return task, inputs


def test_the_sample_pipelines_four_task_steps_as_written(agent: Agent, staged) -> None:
    from amlops.workspace.local.workspace import LocalWorkspace

    pipeline_variables = variables(load())
    agent.set_variables({**pipeline_variables, **VARIABLE_GROUP})
    LocalWorkspace(agent.temp / "amlops-workspace").upload_to_datastore(
        VARIABLE_GROUP["DATASTORE_NAME"], REPO / "training" / "data" / "porto_seguro_sample.csv",
        VARIABLE_GROUP["DATAFILE_NAME"])
    runs = {}
    try:
        for job_variables, step in sample_task_steps():
            # a deployment job's `$[ stageDependencies.<stage>.<job>.outputs['<step>.<name>'] ]` variables
            agent.set_variables({name: agent.variable(STAGE_OUTPUT.match(value).group(1))
                                 for name, value in job_variables.items()})
            task, inputs = as_written(step, pipeline_variables, staged)
            run = runs[step["name"]] = agent.run(staged[task], inputs, step=step["name"], timeout=1500)
            assert run.exit_code == 0 and run.result == "Succeeded", f"{step['name']}:\n{run.text()}\n{run.stderr}"
            assert run.summaries, step["name"]
    finally:
        _stop_deployments(agent)
    assert list(runs) == ["publish", "train", "deploy", "smoke"]
    publish, train, deploy, smoke = runs.values()
    assert publish.outputs["pipelineVersion"] == "4711"  # $(Build.BuildId)
    assert publish.outputs["pipelineName"] == pipeline_variables["PIPELINE_NAME"]
    assert train.outputs["runStatus"] == "Completed" and train.outputs["modelRegistered"] == "true"
    assert "auc" in train.outputs["metrics"] and train.outputs["modelVersion"] == "1"
    assert train.outputs["modelName"] == pipeline_variables["MODEL_NAME"]
    assert deploy.outputs["scoringUri"].startswith("http://127.0.0.1:")
    assert deploy.outputs["deploymentName"] == pipeline_variables["DEPLOYMENT_NAME"]
    assert smoke.outputs["smokeTestPassed"] == "true" and float(smoke.outputs["latencyP95Ms"]) > 0
    assert "auc" in train.summaries[0] and "p95" in smoke.summaries[0]
    key = deploy.outputs.get("scoringKey", "")
    if key:  # a secret output: masked wherever it could show
        assert all(not r.leaks(key) and key not in r.text() for r in runs.values())

    # wait: false on the local target: a warning, and the run is waited for (nothing else could wait for it)
    again = agent.run(staged["AmlRunPipeline"], {"target": "local", "pipelineName": "$(publish.pipelineName)",
                                                 "wait": "false"}, step="again")
    assert again.result == "Succeeded", again.text()
    assert ("warning", "wait: false applies to target azure only; the local workspace runs the pipeline on this "
            "agent, so the task waits for it") in again.issues
    assert again.outputs["runStatus"] == "Completed" and again.outputs["modelRegistered"] == "false"
    # runId: gate a finished run instead of submitting one (after an agentless wait on Azure)
    gate = agent.run(staged["AmlRunPipeline"], {"target": "local", "pipelineName": "$(publish.pipelineName)",
                                                "runId": "$(train.runId)", "runEvaluation": "false"}, step="gate")
    assert gate.result == "Succeeded", gate.text()
    assert f"gating existing run {train.outputs['runId']} (Completed)" in gate.text()
    assert gate.outputs["runId"] == train.outputs["runId"] and gate.outputs["modelVersion"] == "2"


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
