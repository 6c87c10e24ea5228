"""Our network clients against hostile loopback servers: a deadline nothing stretches, a bounded body, no
credentials to another host, secrets masked in whatever the server echoes, one line instead of a traceback.

The CLI runs as a subprocess with a memory cap and a timeout, so a regression fails instead of hanging the
suite or exhausting the machine."""
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
from amlops import bounded_http
from amlops.errors import AmlopsError

KEY = "sk-Scoring/Key+with=odd chars"


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"data": [{"a": 1}, {"a": 2}]}))
    return path


def amlops(*args: str, timeout: float = 60, env: dict | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "amlops", *args], capture_output=True, text=True,
                            timeout=timeout, preexec_fn=hostile.cap_memory, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def smoke(url: str, request_file: Path, *extra: str, timeout: float = 60, env: dict | None = None):
    return amlops("smoke-test", url, "--request-file", str(request_file), "--requests", "1", *extra,
                  timeout=timeout, env=env)


@pytest.mark.parametrize("behaviour", [hostile.never_answers, hostile.drips, hostile.drips_headers],
                         ids=["never_answers", "drips_the_body", "drips_the_headers"])
def test_smoke_test_ends_at_its_deadline_against_a_server_that_never_answers_or_drips(
        servers, request_file, behaviour):
    server = servers(behaviour)
    code, output, took = smoke(server.url(), request_file, "--timeout", "3", timeout=40)
    assert code == 1 and took < 20, output
    assert "did not answer within 3 s" in output and "Traceback" not in output


@pytest.mark.parametrize("behaviour", [hostile.huge_declared, hostile.endless], ids=["2_GB_body", "endless_body"])
def test_smoke_test_refuses_a_huge_or_endless_body_with_one_line_and_bounded_memory(servers, request_file,
                                                                                    behaviour):
    server = servers(behaviour)
    code, output, _ = smoke(server.url(), request_file, "--timeout", "20")
    assert code == 1 and "over the limit of" in output, output
    assert "Traceback" not in output and "MemoryError" not in output
    assert len(output.splitlines()) == 1


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_smoke_test_never_sends_the_key_to_the_host_a_redirect_names(servers, request_file, status):
    elsewhere = servers(hostile.answer(200, b'{"predictions": [0.1, 0.2]}'))
    redirecting = servers(hostile.redirect_to(elsewhere.url(host="localhost"), status))
    code, output, _ = smoke(redirecting.url(), request_file, "--timeout", "5", env={"AMLOPS_SCORING_KEY": KEY})
    assert code == 1 and f"HTTP {status}" in output and "not followed" in output, output
    assert hostile.header(redirecting.requests[0], "Authorization") == f"Bearer {KEY}"
    assert elsewhere.requests == [], "the request (and its key) went to the host the redirect named"


def test_smoke_test_does_not_print_a_scoring_key_echoed_in_a_401_body(servers, request_file):
    server = servers(hostile.echo_authorization)
    code, output, _ = smoke(server.url(), request_file, "--timeout", "5", env={"AMLOPS_SCORING_KEY": KEY})
    assert code == 1 and "HTTP 401" in output, output
    assert "bad credentials Bearer ***" in output
    for form in (KEY, json.dumps(KEY)[1:-1], "sk-Scoring%2FKey%2Bwith%3Dodd+chars", "Key+with"):
        assert form not in output


def test_a_key_with_a_trailing_newline_works_and_never_appears_in_an_error(servers, request_file):
    server = servers(hostile.echo_authorization)
    code, output, _ = smoke(server.url(), request_file, "--timeout", "5", env={"AMLOPS_SCORING_KEY": KEY + "\r\n"})
    assert code == 1 and "Traceback" not in output and KEY not in output, output
    assert hostile.header(server.requests[0], "Authorization") == f"Bearer {KEY}"
    code, output, _ = smoke(server.url(), request_file, "--timeout", "5",
                            env={"AMLOPS_SCORING_KEY": "abc\ndef-secret-part"})
    assert code == 1 and "control character" in output and "def-secret-part" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "notaurl", "ftp://host/score", "http://", "http://h:x/"])
def test_smoke_test_refuses_a_scoring_uri_that_is_not_http_with_one_line(request_file, uri):
    code, output, _ = smoke(uri, request_file)
    assert code == 1 and "is not an http(s) URL" in output and "Traceback" not in output, output
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "nan", "-5", "inf"])
def test_smoke_test_refuses_a_timeout_that_is_not_a_positive_number(request_file, value):
    code, output, _ = smoke("http://127.0.0.1:9/score", request_file, "--timeout", value)
    assert code != 0 and "Traceback" not in output and "timeout" in output.lower(), output


def test_the_client_deadline_holds_in_the_api_too(servers):
    server = servers(hostile.drips)
    started = time.monotonic()
    with pytest.raises(bounded_http.DeadlineExceeded, match="within 2 s"):
        bounded_http.request("GET", server.url(), timeout_s=2)
    assert time.monotonic() - started < 6


def test_the_client_bounds_the_body_in_the_api_too(servers):
    server = servers(hostile.endless)
    with pytest.raises(bounded_http.BodyTooLarge):
        bounded_http.request("GET", server.url(), timeout_s=20, max_body=1_000_000)


def test_a_basic_pat_echoed_in_base64_is_masked():
    from amlops.secret_masking import Masker

    pat = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6"
    masker = Masker([pat])
    for user in ("", "x", "me@corp", "ab"):
        encoded = base64.b64encode(f"{user}:{pat}".encode()).decode()
        assert pat[4:-4] not in masker.mask(encoded)
        shown = masker.mask(f"Authorization: Basic {encoded}")
        assert "***" in shown and len(shown) < len("Authorization: Basic ") + 16, shown
    with pytest.raises(AmlopsError):
        bounded_http.check_url("notaurl")


def test_the_aci_liveness_probe_never_follows_a_redirect_with_the_key(servers):
    from amlops.deploy.aci.target import _probe

    elsewhere = servers(hostile.answer(200, b"{}"))
    redirecting = servers(hostile.redirect_to(elsewhere.url("/", host="localhost"), 302))
    assert _probe(redirecting.url("").rstrip("/"), KEY) == 302
    assert hostile.header(redirecting.requests[0], "Authorization") == f"Bearer {KEY}"
    assert elsewhere.requests == []


def test_smoke_test_goes_through_http_proxy_as_urllib_did_but_never_for_loopback(servers, request_file):
    proxy = servers(hostile.answer(200, b'{"predictions": [0.1, 0.2]}'))
    env = {"http_proxy": proxy.url(""), "HTTP_PROXY": proxy.url(""), "no_proxy": "", "NO_PROXY": ""}
    code, output, _ = smoke("http://scoring.example.invalid:8080/score", request_file, "--timeout", "5", env=env)
    assert code == 0, output
    assert proxy.requests[0].startswith(b"POST http://scoring.example.invalid:8080/score HTTP/1.1")
    direct = servers(hostile.answer(200, b'{"predictions": [0.1, 0.2]}'))
    code, output, _ = smoke(direct.url(), request_file, "--timeout", "5", env=env)
    assert code == 0 and len(proxy.requests) == 1 and len(direct.requests) == 1, output
