"""`amlops policy` against hostile loopback servers: its deadline holds, bodies are bounded, the token never
follows a redirect to another host and is never printed in any encoding a server echoes it in.

The CLI runs as a subprocess with a memory cap and a timeout, so a regression fails instead of hanging."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hostile_servers as hostile

pytest.importorskip("azure.devops")
PAT = "pat0123456789abcdefghijklmnopqrstuvwxyz0123456789ab"


def policy_apply(org_url: str, tmp_path: Path, *extra: str, timeout: float = 60) -> tuple[int, str, float]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SYSTEM_ACCESSTOKEN", "AMLOPS_DEBUG", "SYSTEM_DEBUG")}
    env.update({"AZURE_DEVOPS_EXT_PAT": PAT, "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "sdk-cache")})
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "amlops", "policy", "apply", "--org", org_url, "--project", "p",
                             "--repo", "r", "--build-pipeline", "ci", *extra], capture_output=True, text=True,
                            timeout=timeout, preexec_fn=hostile.cap_memory, env=env)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def assert_no_pat(output: str) -> None:
    basic = base64.b64encode(f":{PAT}".encode()).decode()
    for form in (PAT, basic, basic[4:-4], PAT[5:-5]):
        assert form not in output, output


@pytest.mark.parametrize("behaviour", [hostile.never_answers, hostile.drips],
                         ids=["never_answers", "drips_the_body"])
def test_policy_apply_ends_with_a_clear_error_by_its_deadline(servers, tmp_path, behaviour):
    server = servers(behaviour)
    code, output, took = policy_apply(server.url("/org"), tmp_path, "--timeout", "3", timeout=40)
    assert code == 1 and took < 20, output
    assert "did not answer within 3 s" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_policy_apply_refuses_a_huge_body(servers, tmp_path):
    server = servers(hostile.huge_declared)
    code, output, _ = policy_apply(server.url("/org"), tmp_path, "--timeout", "20")
    assert code == 1 and "over the limit of" in output and "Traceback" not in output, output


def test_policy_apply_never_sends_the_token_to_the_host_a_redirect_names(servers, tmp_path):
    elsewhere = servers(hostile.answer(200, b"{}"))
    redirecting = servers(hostile.redirect_to(elsewhere.url("/org/_apis", host="localhost")))
    code, output, _ = policy_apply(redirecting.url("/org"), tmp_path, "--timeout", "10")
    assert code == 1 and "Traceback" not in output, output
    assert redirecting.requests and hostile.header(redirecting.requests[0], "Authorization").startswith("Basic ")
    assert elsewhere.requests == [], "a request (and the token) went to the host the redirect named"
    assert_no_pat(output)


def test_policy_apply_does_not_print_the_base64_pat_an_echoing_server_returns(servers, tmp_path):
    def echo(server, conn, request):
        value = hostile.header(request, "Authorization") or ""
        body = json.dumps({"message": f"you sent {value} (decoded {base64.b64decode(value.split()[-1]).decode()})",
                           "typeKey": "InvalidArgumentValueException"}).encode()
        hostile.answer(400, body)(server, conn, request)
    server = servers(echo)
    code, output, _ = policy_apply(server.url("/org"), tmp_path, "--timeout", "10")
    assert code == 1 and "Traceback" not in output, output
    assert "***" in output
    assert_no_pat(output)
