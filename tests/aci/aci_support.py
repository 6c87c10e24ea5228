"""Shared pieces of the ACI target tests: TLS material, Azurite (OAuth + HTTPS), the fake ARM, a workspace stand-in,
and the local stand-in for a running container group (the init command, an upstream, the real Caddy)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from amlops.workspace.azure.cloud import AzureCloud
from amlops.workspace.entities import ModelVersion
from prerequisites import missing
from support import REPO, TESTS

AZURITE_CANDIDATES = (TESTS / "azure" / "node_modules" / ".bin" / "azurite-blob",
                      TESTS / "aci" / "node_modules" / ".bin" / "azurite-blob")
TENANT = "ab1f708d-50f6-404c-a006-d71b2ac7a606"
ACCOUNT = "devstoreaccount1"


def require(tool: str | None, what: str) -> str:
    """The tool's path; a missing tool skips on a developer machine and fails in CI (CI must install it)."""
    if tool:
        return tool
    missing(f"{what} is not installed (see docs/aci-deployment.md, 'Tests')")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert, key


class FakeCredential:
    """An Entra ID token credential: unsigned JWTs with the audience asked for (Azurite checks claims)."""

    def __init__(self):
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        now = int(time.time())
        claims = {"aud": scopes[0].removesuffix("/.default").rstrip("/"), "iss": f"https://sts.windows.net/{TENANT}/",
                  "iat": now, "nbf": now, "exp": now + 3600, "oid": "11111111-2222-3333-4444-555555555555",
                  "tid": TENANT}
        return AccessToken(".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), "c2ln"]), now + 3600)


def _b64(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory, tls_pair) -> str:
    """Azurite's blob service over HTTPS with OAuth: the workspace's storage account. Yields its blob endpoint."""
    found = os.environ.get("AZURITE_BLOB") or next((str(p) for p in AZURITE_CANDIDATES if p.exists()), None) \
        or shutil.which("azurite-blob")
    binary = require(found, "Azurite (npm package azurite 3.37.0 in tests/azure)")
    folder = tmp_path_factory.mktemp("azurite")
    port = free_port()
    cert, key = tls_pair
    process = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--oauth", "basic",
                                "--cert", str(cert), "--key", str(key), "--location", str(folder), "--silent",
                                "--skipApiVersionCheck", "--disableTelemetry"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        yield f"https://127.0.0.1:{port}/{ACCOUNT}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


class FakeWorkspace:
    """What the ACI deployer uses of an AzureWorkspace (the same attribute names), over the fakes."""

    kind = "azure"

    def __init__(self, arm_url: str, blob_endpoint: str, cert: Path, credential: FakeCredential,
                 subscription_id: str, resource_group: str):
        self.subscription_id, self.resource_group, self.workspace_name = subscription_id, resource_group, "mlw"
        self.cloud = AzureCloud("AzureTest", arm_url, "login.example.test", "core.windows.net")
        self.credential = credential
        self.client_kwargs = {"connection_verify": str(cert)}
        self.blob_endpoint = blob_endpoint
        self.downloads = 0
        self.models: dict[tuple[str, int | None], ModelVersion] = {}

    def location(self) -> str:
        return "westeurope"

    def default_storage(self) -> tuple[str, str]:
        return ACCOUNT, self.blob_endpoint

    def get_model(self, name: str, version: int | None = None) -> ModelVersion:
        return self.models[(name, version)]

    def download_model(self, model: ModelVersion, destination: Path) -> Path:
        self.downloads += 1
        shutil.copytree(model.path, destination)
        return destination


@pytest.fixture
def fake_arm(tls_pair):
    from fake_arm import FakeArm

    arm = FakeArm(*tls_pair).start()
    yield arm
    arm.stop()


@pytest.fixture
def workspace(fake_arm, azurite, tls_pair) -> FakeWorkspace:
    return FakeWorkspace(fake_arm.base_url, azurite, tls_pair[0], FakeCredential(), fake_arm.subscription,
                         fake_arm.resource_group)


@pytest.fixture
def model(tmp_path) -> ModelVersion:
    folder = tmp_path / "registered"
    folder.mkdir()
    (folder / "model.txt").write_text("tree\n")
    return ModelVersion(name="driver", version=3, path=folder, tags={"run_id": "run-42", "auc": "0.7"})


SCORING = REPO / "training" / "scoring"


class StandIn:
    """Runs a container group's body on this machine: the init container's exact command (it fetches the
    package from Azurite with the SAS), an upstream in place of the inference server, and the real Caddy
    with the group's own gateway configuration (only its addresses changed). The group's FQDN reaches that
    Caddy through the http proxy variables, which the deployer's probe and the smoke test honour."""

    def __init__(self, root: Path, cert: Path, upstream: str = "fake"):
        self.root, self.cert, self.upstream_kind = root, cert, upstream
        self.gateway_port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.init_output = ""
        self.app_root = root / "var-azureml-app"
        self.errors: list[str] = []

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def run(self, body: dict) -> None:
        try:
            self._run(body)
        except Exception as error:  # noqa: BLE001 - reported to the test, the fake keeps serving
            self.errors.append(repr(error))

    def _run(self, body: dict) -> None:
        props = body["properties"]
        init = props["initContainers"][0]["properties"]
        env = _env(init)
        env["AMLOPS_APP_ROOT"] = str(self.app_root)
        command = [sys.executable if c == "python" else c for c in init["command"]]
        done = subprocess.run(command, env={**os.environ, **env, "SSL_CERT_FILE": str(self.cert)},
                              capture_output=True, text=True, timeout=60)
        self.init_output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"init container failed: {self.init_output}")
        server = next(c for c in props["containers"] if c["name"] == "inference")["properties"]
        upstream_port = self._start_upstream(_env(server))
        config = _gateway_config(props)
        config["apps"]["http"]["http_port"] = self.gateway_port
        gateway = config["apps"]["http"]["servers"]["gateway"]
        gateway["listen"] = [f"127.0.0.1:{self.gateway_port}"]
        for route in gateway["routes"]:
            for handler in route["handle"]:
                if handler["handler"] == "reverse_proxy":
                    handler["upstreams"] = [{"dial": f"127.0.0.1:{upstream_port}"}]
        self.start_caddy(config)

    def start_caddy(self, config: dict, port: int | None = None) -> None:
        path = self.root / "caddy.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "HOME": str(self.root), "XDG_DATA_HOME": str(self.root / "data"),
               "XDG_CONFIG_HOME": str(self.root / "config")}
        log = (self.root / "caddy.log").open("w")
        self.processes.append(subprocess.Popen(["caddy", "run", "--config", str(path)], stdout=log,
                                               stderr=subprocess.STDOUT, env=env, start_new_session=True))
        wait_port(port or self.gateway_port)

    def _start_upstream(self, server_env: dict[str, str]) -> int:
        local = {k: v.replace("/var/azureml-app", str(self.app_root)) for k, v in server_env.items()}
        port = free_port()
        if self.upstream_kind == "fake":
            script = Path(__file__).with_name("fake_inference.py")
            command = [sys.executable, str(script), str(port)]
        else:
            (self.root / "gunicorn.conf.py").write_text("control_socket_disable = True\n")
            command = [self.upstream_kind, "-m", "gunicorn", "-c", str(self.root / "gunicorn.conf.py"),
                       "-b", f"127.0.0.1:{port}", "-w", "1", "--timeout", "300",
                       "azureml_inference_server_http.server.entry:app"]
        env = {**os.environ, **local, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        log = (self.root / "upstream.log").open("w")
        self.processes.append(subprocess.Popen(command, env=env, cwd=local["AML_APP_ROOT"], stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
        wait_port(port, 120)
        return port

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))


def _env(properties: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("secureValue", "")) for e in properties.get("environmentVariables", [])}


def _gateway_config(props: dict) -> dict:
    secret = next(v["secret"] for v in props["volumes"] if "secret" in v)
    return json.loads(base64.b64decode(secret["caddy.json"]))


@pytest.fixture
def stand_in(tmp_path, tls_pair, monkeypatch):
    """A StandIn reached through the http proxy variables (https traffic is not proxied)."""
    require(shutil.which("caddy"), "caddy (apt-get install caddy)")
    stand = StandIn(tmp_path / "stand-in", tls_pair[0])
    stand.root.mkdir()
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", stand.proxy)
    monkeypatch.setenv("HTTP_PROXY", stand.proxy)
    monkeypatch.setattr(urllib.request, "_opener", None)
    yield stand
    stand.stop()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A local workspace with model `driver` version 1 trained by the sample pipeline (slow tests only)."""
    from amlops import api
    from amlops.workspace.local.workspace import LocalWorkspace

    ws = LocalWorkspace(tmp_path_factory.mktemp("trained") / "ws")
    api.publish(ws, REPO / "training" / "pipeline.yml")
    run = api.submit(ws, "safe-driver-training")
    assert run.status == "Completed", run.error
    assert api.register_if_better(ws, run, model_name="driver").registered
    return ws
