"""The staged tasks run as the agent runs them (real node, real launcher, the wheel installed into a
cached environment): each failure ends in `task.complete result=Failed` with a clear message, exit 0."""
from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devops_agent import Agent, TaskRun, service_principal

pytestmark = pytest.mark.slow


def local(**inputs: str) -> dict[str, str]:
    return {"target": "local", **inputs}


def assert_failed(run: TaskRun, *fragments: str) -> None:
    assert run.exit_code == 0, run.stderr
    assert run.result == "Failed", run.text()
    for fragment in fragments:
        assert fragment in run.message, run.text()
    assert ("error", run.message.split(" (and ")[0]) in run.issues or run.issues, run.text()


def test_missing_required_input(agent: Agent, staged) -> None:
    run = agent.run(staged["AmlSmokeTest"], dict())
    assert_failed(run, "input 'scoringUri' (Scoring URI) is required")


def test_bad_pick_list_value(agent: Agent, staged) -> None:
    run = agent.run(staged["AmlPublishPipeline"], {"target": "cloud"})
    assert_failed(run, "input 'target' must be one of azure, local; got 'cloud'")


def test_pipeline_file_not_found(agent: Agent, staged) -> None:
    run = agent.run(staged["AmlPublishPipeline"], local(pipelineFile="training/missing.yml"))
    assert_failed(run, "pipeline file not found", "missing.yml", "'pipelineFile'")


def test_empty_pipeline_file_rooted_by_the_agent(agent: Agent, staged) -> None:
    run = agent.run(staged["AmlPublishPipeline"], local(pipelineFile=""))
    assert_failed(run, "input 'pipelineFile'", "an empty file path arrives as the repository root")


def test_broken_yaml(agent: Agent, staged, sources: Path) -> None:
    (sources / "training" / "broken.yml").write_text("type: pipeline\njobs:\n  train: [unclosed\n")
    run = agent.run(staged["AmlPublishPipeline"], local(pipelineFile="training/broken.yml"))
    assert_failed(run, "broken.yml", "invalid YAML")


def test_model_not_found(agent: Agent, staged) -> None:
    run = agent.run(staged["AmlDeployAci"], local(modelName="no-such-model", deploymentName="nothing"))
    assert_failed(run, "no-such-model")


class _Scorer(BaseHTTPRequestHandler):
    """A scoring service: 0.25 for every row, or 401 echoing the Authorization header when `reject` (form-encoded
    and in base64 too when it is "encoded", as some gateways log it)."""

    reject: bool | str = False

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        import base64
        from urllib.parse import quote_plus

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sent = self.headers.get("Authorization") or ""
        if _Scorer.reject == "encoded":
            status, answer = 401, {"form": quote_plus(sent), "b64": base64.b64encode(sent.encode()).decode()}
        elif _Scorer.reject:
            status, answer = 401, {"error": f"bad credentials: {sent}"}
        else:
            status, answer = 200, {"predictions": [0.25] * len(body["data"])}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scorer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Scorer.reject = False
    yield f"http://127.0.0.1:{server.server_address[1]}/score"
    server.shutdown()


def _rows(sources: Path) -> int:
    return len(json.loads((sources / "training/scoring/sample-request.json").read_text())["data"])


def test_smoke_test_failing(agent: Agent, staged, scorer: str, sources: Path) -> None:
    expected = json.dumps([0.9] * _rows(sources))
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri=scorer, expectedValues=expected,
                                                 readinessTimeoutSeconds="10"), step="smoke")
    assert_failed(run, "smoke test failed", "expected 0.9000")
    assert run.outputs["smokeTestPassed"] == "false"
    assert run.summaries and "FAILED" in run.summaries[0]
    assert run.summary_titles == ["AmlSmokeTest"]
    [(kind, path)] = run.test_results
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert kind == "JUnit" and suite.get("failures") == "1"
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["expected values"]


def test_smoke_test_passing_sets_latency_outputs(agent: Agent, staged, scorer: str, sources: Path) -> None:
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri=scorer, requestCount="5",
                                                 expectedValues=json.dumps([0.25] * _rows(sources))))
    assert run.result == "Succeeded", run.text()
    assert run.outputs["smokeTestPassed"] == "true"
    assert float(run.outputs["latencyP95Ms"]) > 0
    assert run.progress[-1] == 100 and "| requests | 5 |" in run.summaries[0]


def test_a_secret_value_never_appears_in_the_output(agent: Agent, staged, scorer: str) -> None:
    key, password, variable = (f"{kind}-{uuid.uuid4().hex}" for kind in ("key", "spn", "var"))
    agent.secret_variables["mysecret"] = ("MySecret", variable)
    _Scorer.reject = True  # the service answers 401 with the key in its body, which the task reports
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri=scorer, scoringKey=key, readinessTimeoutSeconds="10"),
                    connections=[service_principal(password)], extra={"SYSTEM_DEBUG": "true"})
    assert_failed(run, "smoke test failed", "401")
    assert "Bearer ***" in run.text()  # the message did carry the key: masking, not luck, hid it
    for secret in (key, password, variable, agent.access_token):
        assert secret in run.secrets
        assert not run.leaks(secret)
        assert secret not in run.text() and all(secret not in summary for summary in run.summaries)
    lines = run.stdout.splitlines()
    banner = next(i for i, line in enumerate(lines) if line.startswith("amlops "))
    assert all(line.startswith(("##vso[task.setsecret]", "##[debug]")) for line in lines[:banner])


def test_no_python_found(agent: Agent, staged, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin-without-python"
    bin_dir.mkdir()
    os.symlink(shutil.which("node"), bin_dir / "node")
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri="http://127.0.0.1:9/score"), path=str(bin_dir))
    assert_failed(run, "Python 3.10 or later was not found", "python3: not found", "pythonPath")


def test_too_old_python_and_bad_python_path(agent: Agent, staged, tmp_path: Path) -> None:
    bin_dir = tmp_path / "old-python"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text('#!/bin/sh\necho \'{"version": [3, 8, 10], "executable": "/old/python3.8"}\'\n')
    fake.chmod(0o755)
    os.symlink(shutil.which("node"), bin_dir / "node")
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri="http://x"), path=str(bin_dir))
    assert_failed(run, "python3: Python 3.8.10 is too old")
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri="http://x", pythonPath=str(tmp_path / "nope")))
    assert_failed(run, "the pythonPath input does not name a usable Python", "not found")


def test_a_scoring_key_echoed_form_encoded_or_in_base64_never_appears(agent: Agent, staged, scorer: str) -> None:
    import base64
    from urllib.parse import quote_plus

    _Scorer.reject = "encoded"
    key = f"key with spaces/{uuid.uuid4().hex}"
    run = agent.run(staged["AmlSmokeTest"], dict(scoringUri=scorer, scoringKey=key, readinessTimeoutSeconds="10"))
    assert_failed(run, "smoke test failed", "401")
    output = (run.stdout + "\n" + run.stderr).splitlines()
    shown = "\n".join([line for line in output if not line.startswith("##vso[task.setsecret]")] + run.summaries)
    assert "401" in shown
    for form in (key, quote_plus(key), base64.b64encode(f"Bearer {key}".encode()).decode()[12:-4], key[-32:]):
        assert form not in shown, form
