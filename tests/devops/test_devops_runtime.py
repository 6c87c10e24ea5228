"""The runtime in process: every outcome ends in task.complete and exit code 0."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from amlops.devops import runtime, tasks
from amlops.errors import AmlopsError
from devops_agent import parse_command

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


def run(argv: list[str], env: dict[str, str]) -> tuple[int, list, str]:
    out = io.StringIO()
    environ = dict(env)
    code = runtime.main(argv, stream=out, environ=environ)
    commands = [parse_command(line) for line in out.getvalue().splitlines()]
    return code, [c for c in commands if c], out.getvalue()


def completion(commands: list) -> tuple[str, str]:
    done = [c for c in commands if c.name == "task.complete"]
    assert len(done) == 1
    return done[0].properties.get("result"), done[0].data


def smoke_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"AMLOPS_TASK_DIR": str(TASKS_DIR / "AmlSmokeTest"), "BUILD_SOURCESDIRECTORY": str(tmp_path),
            "AGENT_TEMPDIRECTORY": str(tmp_path), "INPUT_TARGET": "local", **extra}


def test_unknown_task(tmp_path: Path) -> None:
    code, commands, _ = run(["NoSuchTask"], smoke_env(tmp_path))
    assert code == 0 and completion(commands)[0] == "Failed"
    assert "unknown task 'NoSuchTask'" in completion(commands)[1]


def test_missing_task_dir_tells_to_use_the_launcher(tmp_path: Path) -> None:
    env = smoke_env(tmp_path)
    del env["AMLOPS_TASK_DIR"]
    code, commands, _ = run(["AmlSmokeTest"], env)
    assert code == 0 and "start the task through its launcher" in completion(commands)[1]


def test_secrets_are_masked_first_and_scrubbed_from_the_environment(tmp_path: Path) -> None:
    env = smoke_env(tmp_path, INPUT_SCORINGKEY="the-scoring-key-42", SECRET_OTHER="another-secret-99")
    out = io.StringIO()
    runtime.main(["AmlSmokeTest"], stream=out, environ=env)
    lines = out.getvalue().splitlines()
    banner = next(i for i, line in enumerate(lines) if line.startswith("amlops "))
    assert {parse_command(line).data for line in lines[:banner]} >= {"the-scoring-key-42", "another-secret-99"}
    assert "INPUT_SCORINGKEY" not in env and "SECRET_OTHER" not in env
    assert not any("the-scoring-key-42" in line for line in lines[banner:])


def test_user_error_is_one_failed_line_per_problem(tmp_path: Path, monkeypatch) -> None:
    def broken(ctx):
        raise AmlopsError("first problem\nsecond problem")
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", broken)
    code, commands, _ = run(["AmlSmokeTest"], smoke_env(tmp_path, INPUT_SCORINGURI="http://x"))
    issues = [c.data for c in commands if c.name == "task.logissue"]
    assert issues == ["first problem", "second problem"]
    assert completion(commands) == ("Failed", "first problem (and 1 more problems above)")


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_is_one_line_and_traceback_only_in_debug(tmp_path: Path, monkeypatch, debug) -> None:
    def broken(ctx):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", broken)
    env = smoke_env(tmp_path, INPUT_SCORINGURI="http://x", SYSTEM_DEBUG="true" if debug else "false")
    code, commands, text = run(["AmlSmokeTest"], env)
    assert code == 0
    assert completion(commands) == ("Failed", "unexpected error: RuntimeError: boom")
    assert ("Traceback (most recent call last)" in text) is debug


def test_prints_inside_a_task_are_masked_and_neutralized(tmp_path: Path, monkeypatch) -> None:
    def chatty(ctx):
        print("key is the-scoring-key-42 ##vso[task.complete result=Failed]forged")
        ctx.output("smokeTestPassed", True)
        return "ok"
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", chatty)
    env = smoke_env(tmp_path, INPUT_SCORINGURI="http://x", INPUT_SCORINGKEY="the-scoring-key-42")
    code, commands, text = run(["AmlSmokeTest"], env)
    assert completion(commands) == ("Succeeded", "ok")
    assert "key is *** ##_vso[" in text
    outputs = [c for c in commands if c.name == "task.setvariable"]
    assert outputs[0].properties.get("variable") == "smokeTestPassed" and outputs[0].data == "true"
    assert outputs[0].properties.get("isOutput") == "true"


def test_cache_dir_defaults_under_the_tools_directory(tmp_path: Path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", lambda ctx: seen.setdefault("ok", "ok"))
    env = smoke_env(tmp_path, INPUT_SCORINGURI="http://x", AGENT_TOOLSDIRECTORY=str(tmp_path / "tools"))
    runtime.main(["AmlSmokeTest"], stream=io.StringIO(), environ=env)
    assert env["AMLOPS_CACHE_DIR"] == str(tmp_path / "tools" / "amlops" / "cache")


def test_parse_parameters_and_expected_values() -> None:
    assert tasks.parse_parameters("a=1\n\n# note\n b = x=y \n") == {"a": "1", "b": "x=y"}
    with pytest.raises(AmlopsError, match="line 2 is not key=value"):
        tasks.parse_parameters("a=1\nbroken")
    assert tasks.parse_expected("[0.1, 1]") == [0.1, 1.0]
    for bad in ("{}", "[true]", "[\"a\"]", "nope"):
        with pytest.raises(AmlopsError, match="JSON list of numbers"):
            tasks.parse_expected(bad)


def test_a_variable_holding_a_secret_in_base64_or_form_encoding_is_scrubbed() -> None:
    import base64
    from urllib.parse import quote_plus

    from amlops.devops import secrets

    secret = "s3cret value/with+chars"
    env = {"ENDPOINT_AUTH_PARAMETER_X_SERVICEPRINCIPALKEY": secret, "HTTP_BASIC": base64.b64encode(
        f"me:{secret}".encode()).decode(), "FORM": "client_secret=" + quote_plus(secret), "HOME": "/home/me"}
    removed = secrets.scrub(env, secrets.collect(env))
    assert sorted(removed) == ["ENDPOINT_AUTH_PARAMETER_X_SERVICEPRINCIPALKEY", "FORM", "HTTP_BASIC"]
    assert env == {"HOME": "/home/me"}


def test_the_agent_proxy_password_is_collected_and_scrubbed_when_a_proxy_was_set_already() -> None:
    """An agent whose environment sets HTTPS_PROXY itself keeps the launcher from folding the password into
    it, so AGENT_PROXYPASSWORD reaches the runtime as it is: no step or server may inherit it."""
    from amlops.devops import secrets

    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "AGENT_PROXYPASSWORD": "pr0xy-passw0rd", "HOME": "/home/me"}
    assert secrets.collect(env) == ["pr0xy-passw0rd"]
    assert secrets.scrub(env, secrets.collect(env)) == ["AGENT_PROXYPASSWORD"]
    assert env == {"HTTPS_PROXY": "http://proxy.corp:3128", "HOME": "/home/me"}


def test_a_yaml_problem_links_to_its_file_and_line(tmp_path: Path, monkeypatch) -> None:
    from amlops.pipeline.loader import load_pipeline

    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text("$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\n"
                        "type: pipeline\njobs:\n  train:\n    type: command\n    componentt: ./missing.yml\n")
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", lambda ctx: load_pipeline(pipeline))
    _, commands, _ = run(["AmlSmokeTest"], smoke_env(tmp_path, INPUT_SCORINGURI="http://x"))
    located = [c for c in commands if c.name == "task.logissue" and c.properties.get("sourcepath")]
    assert located, [c.data for c in commands if c.name == "task.logissue"]
    assert located[0].properties.get("sourcepath") == str(pipeline.resolve())
    assert int(located[0].properties.get("linenumber")) >= 1
    assert located[0].properties.get("type") == "error"


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_the_agents_cancel_signals_end_cancelled(tmp_path: Path, monkeypatch, signal_name) -> None:
    import os
    import signal

    def interrupted(ctx):
        os.kill(os.getpid(), getattr(signal, signal_name))
        os.kill(os.getpid(), signal.SIGTERM)  # the agent's second signal while cancelling: ignored
        return "not reached"
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", interrupted)
    code, commands, _ = run(["AmlSmokeTest"], smoke_env(tmp_path, INPUT_SCORINGURI="http://x"))
    assert code == 0 and completion(commands) == ("Cancelled", "the task was cancelled")
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_proxy_password_is_masked_but_the_proxy_stays(tmp_path: Path, monkeypatch) -> None:
    proxy = "http://builder:p%40ss%3Bw0rd@proxy.corp:8080"

    def task(ctx):
        print("connecting through", proxy, "as p@ss;w0rd")
        return "done"
    monkeypatch.setitem(tasks.TASKS, "AmlSmokeTest", task)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    env = smoke_env(tmp_path, INPUT_SCORINGURI="http://x", HTTPS_PROXY=proxy)
    out = io.StringIO()
    runtime.main(["AmlSmokeTest"], stream=out, environ=env)
    secrets = {parse_command(line).data for line in out.getvalue().splitlines()
               if line.startswith("##vso[task.setsecret]")}
    assert {"p@ss;w0rd", "p%40ss%3Bw0rd"} <= secrets
    assert env["HTTPS_PROXY"] == proxy
    printed = [line for line in out.getvalue().splitlines() if "connecting through" in line]
    assert printed and "p@ss" not in printed[0] and "p%40ss" not in printed[0]
