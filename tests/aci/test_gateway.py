"""The gateway is real: the exact Caddy configuration the deployer ships, run by the real `caddy`, in front
of the real Azure ML inference server serving a trained model (only the addresses are changed)."""
from __future__ import annotations

import json
import secrets
import shutil
import ssl
import urllib.error
import urllib.request

import pytest

from aci_support import SCORING, StandIn, free_port, group_spec, require
from amlops import api
from amlops.deploy.aci import gateway
from amlops.deploy.local import target as local
from amlops.deploy.aci.group import GroupSpec, gateway_config_text

pytestmark = pytest.mark.slow
REQUEST = SCORING / "sample-request.json"
ROWS = len(json.loads(REQUEST.read_text())["data"])


@pytest.fixture(scope="module")
def server(trained):
    """The trained model served by the real inference server on loopback (amlops.deploy.local.target)."""
    deployment = api.deploy(trained, model_name="driver", model_version=1, deployment_name="behind-gateway",
                            scoring_folder=SCORING)
    yield deployment.scoring_uri.rsplit("/", 1)[0].removeprefix("http://")
    local.delete_local(trained, "behind-gateway")


@pytest.fixture
def caddy(tmp_path):
    require(shutil.which("caddy"), "caddy (apt-get install caddy)")
    stand = StandIn(tmp_path / "caddy", cert=tmp_path / "unused")
    stand.root.mkdir()
    yield stand
    stand.close()


def _spec(key: str | None) -> GroupSpec:
    return group_spec(key=key)


def _call(url: str, authorization: str | None, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **({"Authorization": authorization} if authorization else {})}
    request = urllib.request.Request(url, data=REQUEST.read_bytes(), headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_only_the_right_key_reaches_the_inference_server(server, caddy, monkeypatch):
    key = secrets.token_urlsafe(32)
    port = free_port()
    config = gateway_config_text(_spec(key), upstream=server, http_port=port, host="127.0.0.1")
    caddy.start_caddy(json.loads(config), port)
    uri = f"http://127.0.0.1:{port}/score"

    for authorization in (None, "Bearer", f"Bearer {key[:-1]}", f"Bearer {key}x", f"Basic {key}", key):
        status, body = _call(uri, authorization)
        assert status == 401 and "missing or wrong key" in body, authorization
    status, body = _call(uri, f"Bearer {key}")
    assert status == 200 and len(json.loads(body)["predictions"]) == ROWS

    monkeypatch.setattr(urllib.request, "_opener", None)
    report = api.smoke_test(uri, request_file=REQUEST, key=key, count=5, readiness_timeout_s=10)
    assert report.passed, report.text()
    without = api.smoke_test(uri, request_file=REQUEST, count=1, readiness_timeout_s=1)
    assert not without.passed and "expected 200, got 401" in without.message
    assert key not in caddy.logs()


def test_without_auth_the_gateway_just_proxies(server, caddy):
    port = free_port()
    caddy.start_caddy(json.loads(gateway_config_text(_spec(None), upstream=server, http_port=port,
                                                     host="127.0.0.1")), port)
    status, body = _call(f"http://127.0.0.1:{port}/score", None)
    assert status == 200 and len(json.loads(body)["predictions"]) == ROWS


def test_tls_with_a_given_certificate(server, caddy, tls_pair):
    key = secrets.token_urlsafe(32)
    https_port, http_port = free_port(), free_port()
    tls = gateway.Tls("localhost", certificate_file=str(tls_pair[0]), key_file=str(tls_pair[1]))
    config = gateway.caddy_config_text(key, upstream=server, http_port=http_port, https_port=https_port,
                                       host="127.0.0.1", tls=tls)
    caddy.start_caddy(json.loads(config), https_port)
    context = ssl.create_default_context(cafile=str(tls_pair[0]))
    status, body = _call(f"https://localhost:{https_port}/score", f"Bearer {key}", context)
    assert status == 200 and len(json.loads(body)["predictions"]) == ROWS
    assert _call(f"https://localhost:{https_port}/score", None, context)[0] == 401
