"""Bad durations, counts and files for the process commands are one line; inside a pipeline script the CLI
never lets a step's or a server's `##vso[` line reach the agent as a command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from amlops import api
from amlops.cli import main
from amlops.workspace.entities import Deployment
from amlops.workspace.local.workspace import LocalWorkspace


def one_line_error(result, *words: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output


@pytest.mark.parametrize("value", ["0", "nan", "-5", "inf"])
def test_submit_refuses_a_timeout_that_is_not_a_positive_number(tmp_path, mini_project, value):
    ws = LocalWorkspace(tmp_path / "ws")
    api.publish(ws, mini_project / "pipeline.yml")
    result = CliRunner().invoke(main, ["submit", "mini-pipeline", "--workspace", str(ws.root), "--timeout", value])
    assert result.exit_code == 2 and "--timeout" in result.output and "positive number" in result.output
    assert "Traceback" not in result.output and ws.list_runs() == [], "nothing may run"


def _deployment(ws: LocalWorkspace, log: Path | None) -> None:
    ws.save_deployment(Deployment(name="svc", model_name="m", model_version=1, scoring_uri="http://127.0.0.1:9/score",
                                  status="Healthy", created_at="now", pid=None, log_path=log))


def test_deployment_logs_refuses_a_negative_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("one\ntwo\nthree\n")
    ws = LocalWorkspace(tmp_path / "ws")
    _deployment(ws, log)
    result = CliRunner().invoke(main, ["deployments", "logs", "svc", "--workspace", str(ws.root), "--tail", "-3"])
    assert result.exit_code == 2 and "--tail" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["deployments", "logs", "svc", "--workspace", str(ws.root), "--tail", "2"])
    assert result.output == "two\nthree\n"


def test_deployment_logs_with_a_missing_server_log_is_one_line(tmp_path):
    ws = LocalWorkspace(tmp_path / "ws")
    _deployment(ws, tmp_path / "gone" / "server.log")
    result = CliRunner().invoke(main, ["deployments", "logs", "svc", "--workspace", str(ws.root)])
    one_line_error(result, "has no server log", "amlops deploy")


def test_deployment_logs_neutralize_commands_inside_a_pipeline(tmp_path, monkeypatch):
    log = tmp_path / "server.log"
    log.write_text("##vso[task.setvariable variable=x]evil\n##[error]fake\n")
    ws = LocalWorkspace(tmp_path / "ws")
    _deployment(ws, log)
    monkeypatch.setenv("TF_BUILD", "True")
    result = CliRunner().invoke(main, ["deployments", "logs", "svc", "--workspace", str(ws.root)])
    assert "##vso[" not in result.output and "##[" not in result.output
    assert "task.setvariable variable=x]evil" in result.output


def test_submit_inside_a_pipeline_does_not_echo_a_steps_vso_line_as_a_command(tmp_path, mini_project):
    code = mini_project / "code" / "make.py"
    code.write_text('print("##vso[task.setvariable variable=stolen]yes")\nprint("##[error]forged")\n'
                    + code.read_text())
    ws = LocalWorkspace(tmp_path / "ws")
    api.publish(ws, mini_project / "pipeline.yml")
    result = subprocess.run([sys.executable, "-m", "amlops", "submit", "mini-pipeline", "--workspace", str(ws.root)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "TF_BUILD": "True"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "task.setvariable variable=stolen" in output, "the line is shown, neutralized"
    assert not [line for line in output.splitlines() if "##vso[" in line or "##[" in line]


def test_an_unexpected_error_is_one_line_without_debug(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("surprise")
    monkeypatch.setattr(api, "publish", broken)
    result = CliRunner().invoke(main, ["publish", "x.yml", "--workspace", str(tmp_path / "ws")])
    one_line_error(result, "unexpected KeyError", "--debug")
    result = CliRunner().invoke(main, ["--debug", "publish", "x.yml", "--workspace", str(tmp_path / "ws")])
    assert "Traceback" in result.output
