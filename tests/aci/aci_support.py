"""Shared pieces of the ACI target tests: TLS material, Azurite (OAuth + HTTPS), the fake ARM, a workspace stand-in,
and the local stand-in for a running container group (the init command, an upstream, the real Caddy)."""
from __future__ import annotations

import base64
import json
import os
import shlex
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
PIPELINE_OID = "11111111-2222-3333-4444-555555555555"  # the pipeline's identity (FakeCredential's tokens)
IDENTITY_CLIENT_ID = "5b0e8a51-0c8e-4f0e-9d1e-0000000000c1"  # the template's <workspace>-aci identity
IDENTITY_PRINCIPAL_ID = "5b0e8a51-0c8e-4f0e-9d1e-0000000000e1"
REGISTRY = "acrmlw.azurecr.io"
VAULT_HOST = "kv-mlw.vault.azure.net"  # reached through a CONNECT proxy that tunnels it to the fake vault


def require(tool: str | None, what: str) -> str:
    """The tool's path; a missing tool skips on a developer machine and fails in CI (CI must install it)."""
    if tool:
        return tool
    missing(f"{what} is not installed (see docs/aci-deployment.md, 'Tests')")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, timeout_s: float = 120) -> None:
    """Until `process` (or a child it execs) listens on `port`; RuntimeError if it exits first or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"did not listen on {port} within {timeout_s} s")


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
                    "-addext", f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{VAULT_HOST}"],
                   check=True, capture_output=True)
    return cert, key


class FakeCredential:
    """An Entra ID token credential: unsigned JWTs with the audience asked for (Azurite checks claims)."""

    def __init__(self, oid: str = PIPELINE_OID):
        self.scopes: list[str] = []
        self.oid = oid

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        now = int(time.time())
        claims = {"aud": scopes[0].removesuffix("/.default").rstrip("/"), "iss": f"https://sts.windows.net/{TENANT}/",
                  "iat": now, "nbf": now, "exp": now + 3600, "oid": self.oid, "tid": TENANT}
        return AccessToken(unsigned_jwt(claims), now + 3600)


def unsigned_jwt(claims: dict) -> str:
    return ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), "c2ln"])


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

    def linked_resources(self) -> dict[str, str]:
        prefix = f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers"
        return {"container_registry": f"{prefix}/Microsoft.ContainerRegistry/registries/acrmlw",
                "key_vault": f"{prefix}/Microsoft.Keyvault/vaults/kv-mlw"}

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
def key_vault(tls_pair, monkeypatch):
    """The workspace's key vault at its production-style name, reached through https_proxy (a CONNECT proxy that
    plays DNS for that one name): azure-keyvault-secrets checks that the vault's host ends in the challenge's
    resource domain, vault.azure.net. Everything on 127.0.0.1 bypasses the proxy."""
    from fake_keyvault import FakeKeyVault

    sys.path.append(str(TESTS / "e2e_azure"))
    from stack_cloud import ConnectProxy

    vault = FakeKeyVault(*tls_pair, tenant=TENANT, officer_oids={PIPELINE_OID}, host=VAULT_HOST).start()
    proxy = ConnectProxy(lambda host: vault.port if host == VAULT_HOST else None).start()
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    yield vault
    proxy.stop()
    vault.stop()


def seed_resources(arm: Any, workspace: "FakeWorkspace", vault_url: str) -> None:
    """What environment_setup/azuredeploy.json creates, as ARM returns it: the registry, the key vault and the
    <workspace>-aci identity."""
    from amlops.deploy.aci.resources import identity_id

    linked = workspace.linked_resources()
    arm.add_resource(linked["container_registry"], {"loginServer": REGISTRY, "adminUserEnabled": False})
    arm.add_resource(linked["key_vault"], {"vaultUri": vault_url, "enableRbacAuthorization": True})
    arm.add_resource(identity_id(workspace), {"clientId": IDENTITY_CLIENT_ID, "principalId": IDENTITY_PRINCIPAL_ID,
                                              "tenantId": TENANT})


@pytest.fixture
def workspace(fake_arm, azurite, tls_pair, key_vault) -> FakeWorkspace:
    made = FakeWorkspace(fake_arm.base_url, azurite, tls_pair[0], FakeCredential(), fake_arm.subscription,
                         fake_arm.resource_group)
    seed_resources(fake_arm, made, key_vault.url)
    return made


@pytest.fixture
def model(tmp_path) -> ModelVersion:
    folder = tmp_path / "registered"
    folder.mkdir()
    (folder / "model.txt").write_text("tree\n")
    return ModelVersion(name="driver", version=3, path=folder, tags={"run_id": "run-42", "auc": "0.7"})


SCORING = REPO / "training" / "scoring"


class IdentityEndpoint:
    """ACI's managed identity endpoint as the containers of one group see it (the IMDS token route): it needs
    `Metadata: true`, api-version and resource, and answers only for a client id of an identity the group was
    given (https://learn.microsoft.com/azure/container-instances/container-instances-managed-identity). Tokens
    are unsigned JWTs Azurite accepts, issued at the time of the request: they never come from the definition."""

    def __init__(self):
        import http.server
        import threading
        import urllib.parse

        self.client_ids: dict[str, str] = {}  # client id -> principal id, of the group's identities
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()}
                outer.requests.append(query)
                status, answer = outer.answer(self.headers.get("Metadata"), query)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metadata/identity/oauth2/token"

    def answer(self, metadata: str | None, query: dict) -> tuple[int, dict]:
        if metadata != "true":
            return 400, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
        if not query.get("api-version") or not query.get("resource"):
            return 400, {"error": "invalid_request", "error_description": "api-version and resource are required"}
        principal = self.client_ids.get(query.get("client_id", ""))
        if principal is None:
            return 400, {"error": "invalid_request", "error_description": "Identity not found"}
        now = int(time.time())
        claims = {"aud": query["resource"].rstrip("/"), "iss": f"https://sts.windows.net/{TENANT}/", "iat": now,
                  "nbf": now, "exp": now + 3600, "oid": principal, "tid": TENANT}
        return 200, {"access_token": unsigned_jwt(claims), "expires_in": "3600", "resource": query["resource"],
                     "token_type": "Bearer", "client_id": query["client_id"]}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StandIn:
    """Runs a container group's body on this machine: the inference container's exact command (it gets a token
    from the identity endpoint, fetches the package from Azurite and execs the start command, here an upstream
    in place of the image's runit), and the real Caddy with the group's own gateway configuration (only its
    addresses changed). Init containers run with no identity endpoint, as in ACI. The group's FQDN reaches that
    Caddy through the http proxy variables, which the deployer's probe and the smoke test honour.
    `identities` maps identity resource ids (lower case) to (client id, principal id)."""

    def __init__(self, root: Path, cert: Path, upstream: str = "fake", identities: dict | None = None):
        self.root, self.cert, self.upstream_kind = root, cert, upstream
        self.identities = identities or {}
        self.gateway_port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.init_output = ""
        self.app_root = root / "var-azureml-app"
        self.errors: list[str] = []
        self.runs: list[Any] = []  # the hosts' clock at each start
        self.endpoint = IdentityEndpoint()

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def run(self, body: dict, clock: Any = None) -> None:
        self.runs.append(clock)
        try:
            self._run(body)
        except Exception as error:  # noqa: BLE001 - reported to the test, the fake keeps serving
            self.errors.append(repr(error))

    def _run(self, body: dict) -> None:
        props = body["properties"]
        given = (body.get("identity") or {}).get("userAssignedIdentities") or {}
        self.endpoint.client_ids = dict(self.identities[i.lower()] for i in given if i.lower() in self.identities)
        self.app_root.mkdir(parents=True, exist_ok=True)  # the emptyDir volume
        for init in props.get("initContainers", []):
            done = subprocess.run(self._command(init["properties"]), env=self._env(init["properties"], identity=False),
                                  capture_output=True, text=True, timeout=60)
            self.init_output += done.stdout + done.stderr
            if done.returncode != 0:
                raise RuntimeError(f"init container failed: {self.init_output}")
        server = next(c for c in props["containers"] if c["name"] == "inference")["properties"]
        upstream_port = free_port()
        env = self._env(server, identity=True, start=self._upstream_command(upstream_port))
        log = (self.root / "upstream.log").open("a")
        process = subprocess.Popen(self._command(server), env=env, cwd=self.app_root, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        try:
            wait_listening(process, upstream_port)
        except RuntimeError as error:
            raise RuntimeError(f"the inference container: {error}: {self.logs()}") from None
        config = _gateway_config(props)
        config["apps"]["http"]["http_port"] = self.gateway_port
        gateway = config["apps"]["http"]["servers"]["gateway"]
        gateway["listen"] = [f"127.0.0.1:{self.gateway_port}"]
        for route in gateway["routes"]:
            for handler in route["handle"]:
                if handler["handler"] == "reverse_proxy":
                    handler["upstreams"] = [{"dial": f"127.0.0.1:{upstream_port}"}]
        self.start_caddy(config)

    def _command(self, properties: dict) -> list[str]:
        return [sys.executable if c == "python" else c for c in properties["command"]]

    def _env(self, properties: dict, identity: bool, start: str = "") -> dict[str, str]:
        local = {k: v.replace("/var/azureml-app", str(self.app_root)) for k, v in _env(properties).items()}
        local.update(AMLOPS_APP_ROOT=str(self.app_root), AMLOPS_TOKEN_ATTEMPTS="2", SSL_CERT_FILE=str(self.cert),
                     PYTHONUNBUFFERED="1")
        # no identity endpoint at all for init containers: a closed port, as the IMDS address is unreachable there
        local["AMLOPS_IDENTITY_ENDPOINT"] = self.endpoint.url if identity else f"http://127.0.0.1:{_closed_port()}/"
        if start:
            local["AMLOPS_START"] = start
        env = {**os.environ, **local}
        env.pop("PYTHONPATH", None)
        return env

    def _upstream_command(self, port: int) -> str:
        if self.upstream_kind == "fake":
            return shlex.join([sys.executable, str(Path(__file__).with_name("fake_inference.py")), str(port)])
        (self.root / "gunicorn.conf.py").write_text("control_socket_disable = True\n")
        return shlex.join([self.upstream_kind, "-m", "gunicorn", "-c", str(self.root / "gunicorn.conf.py"),
                           "-b", f"127.0.0.1:{port}", "-w", "1", "--timeout", "300",
                           "azureml_inference_server_http.server.entry:app"])

    def start_caddy(self, config: dict, port: int | None = None) -> None:
        path = self.root / "caddy.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "HOME": str(self.root), "XDG_DATA_HOME": str(self.root / "data"),
               "XDG_CONFIG_HOME": str(self.root / "config")}
        log = (self.root / "caddy.log").open("a")
        self.processes.append(subprocess.Popen(["caddy", "run", "--config", str(path)], stdout=log,
                                               stderr=subprocess.STDOUT, env=env, start_new_session=True))
        wait_port(port or self.gateway_port)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def close(self) -> None:
        self.stop()
        self.endpoint.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))


def _closed_port() -> int:
    return free_port()  # nothing listens there


def _env(properties: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("secureValue", "")) for e in properties.get("environmentVariables", [])}


def _gateway_config(props: dict) -> dict:
    secret = next(v["secret"] for v in props["volumes"] if "secret" in v)
    return json.loads(base64.b64decode(secret["caddy.json"]))


@pytest.fixture
def stand_in(tmp_path, tls_pair, monkeypatch, fake_arm, key_vault):
    """A StandIn reached through the http proxy variables (https traffic goes to key_vault's proxy)."""
    require(shutil.which("caddy"), "caddy (apt-get install caddy)")
    identity = (f"/subscriptions/{fake_arm.subscription}/resourceGroups/{fake_arm.resource_group}/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/mlw-aci")
    stand = StandIn(tmp_path / "stand-in", tls_pair[0],
                    identities={identity.lower(): (IDENTITY_CLIENT_ID, IDENTITY_PRINCIPAL_ID)})
    stand.root.mkdir()
    for name in ("all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", stand.proxy)
    monkeypatch.setenv("HTTP_PROXY", stand.proxy)
    monkeypatch.setattr(urllib.request, "_opener", None)
    yield stand
    stand.close()


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


def group_spec(**changes: Any):
    """A GroupSpec as the deployer makes one for the fake workspace (tests change what they need)."""
    from amlops.deploy.aci.group import GroupSpec, Identity

    identity = Identity("/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-ml/providers/"
                        "Microsoft.ManagedIdentity/userAssignedIdentities/mlw-aci", IDENTITY_CLIENT_ID)
    values = dict(name="g1", location="westeurope", model_name="m", model_version=1, package_sha256="0" * 64,
                  entry_script="score.py", cpu_cores=1, memory_gb=1.5, dns_name_label="g1-label", tags={"a": "b"},
                  registry=REGISTRY, identity=identity, package_size=100,
                  package_url="https://a.blob.core.windows.net/amlops-deployments/g1/packages/p.tar.gz", key="k" * 43)
    values.update(changes)
    return GroupSpec(**values)
