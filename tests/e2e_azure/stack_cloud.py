"""A custom Azure cloud on loopback, reached the way a real agent reaches one: through its service connection's
Resource Manager URL, an HTTPS proxy and a trusted CA, with no name resolution or code patched in the tasks.

The cloud's hosts end in `.<DOMAIN>`; they do not resolve, and do not need to: every HTTPS client on the agent
(requests, urllib) sends `CONNECT host:443` to the proxy in `https_proxy`, and `ConnectProxy` plays DNS for this
cloud, tunnelling each host to the local port that serves it (anything else is refused and recorded):

    management.<STORAGE_SUFFIX>    FrontDoor: Resource Manager (Azure ML's ARM API -> aml_fake.FakeAzureML,
                                   Microsoft.ContainerInstance -> fake_arm.FakeArm, and the cloud's metadata
                                   endpoint, GET /metadata/endpoints)
    <region>.api.<DOMAIN>          FrontDoor: Azure ML's workspace data plane (FakeAzureML)
    login.<DOMAIN>                 FrontDoor: Entra ID (`FakeEntra`: OpenID configuration + client credentials)
    <account>.blob.<STORAGE_SUFFIX>  Azurite (production-style host names: the account is the first label)

The layout is Azure Stack Hub's: Resource Manager at `management.<region>.<fqdn>`, storage at
`<account>.blob.<region>.<fqdn>`, the storage suffix being derived from the Resource Manager URL. The region label
is `core` because azure-storage-blob finds the account name of a bare account key (what azure-ai-ml passes when it
downloads outputs) only in `<account>.blob.core.<...>` host names.

One self-signed certificate (CA:true) covers every name; clients trust it through REQUESTS_CA_BUNDLE and
SSL_CERT_FILE. Tokens are HS256 JWTs signed by FakeEntra; the front door checks the signature, the audience
(`<resource manager>`) and the expiry of every Resource Manager and data-plane call.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import selectors
import socket
import socketserver
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, parse_qsl, urlsplit

DOMAIN = "stack.localhost"
STORAGE_SUFFIX = f"core.{DOMAIN}"
ARM_HOST = f"management.{STORAGE_SUFFIX}"
LOGIN_HOST = f"login.{DOMAIN}"
RESOURCE_MANAGER = f"https://{ARM_HOST}/"
STORAGE_AUDIENCE = "https://storage.azure.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- Entra ID ---------------------------------------------------------------------------------------------------
@dataclass
class Issued:
    client_id: str
    scope: str
    audience: str


class FakeEntra:
    """Entra ID for one tenant and one service principal (client secret): the OpenID configuration MSAL reads
    and the token endpoint of the client credentials grant. Tokens carry the issuer Entra ID puts in v1 access
    tokens (`https://sts.windows.net/<tenant>/`, which Azurite checks) and the audience asked for."""

    def __init__(self, tenant: str, client_id: str, client_secret: str, host: str = LOGIN_HOST):
        self.tenant, self.client_id, self.client_secret, self.host = tenant, client_id, client_secret, host
        self.key = secrets.token_bytes(32)
        self.issued: list[Issued] = []
        self.refused: list[str] = []
        self.requests: list[str] = []

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, Any, dict]:
        self.requests.append(f"{method} {path}")
        base = f"https://{self.host}/{self.tenant}"
        route = urlsplit(path).path
        if method == "GET" and route == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            return 200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                         "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                         "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                         "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                         "response_types_supported": ["code", "id_token", "token"],
                         "tenant_region_scope": "EU"}, {}
        if method == "POST" and route == f"/{self.tenant}/oauth2/v2.0/token":
            return self._token(dict(parse_qsl(body.decode("utf-8"))))
        self.refused.append(f"{method} {path}")
        return 404, {"error": "not_found", "error_description": f"no route {method} {route}"}, {}

    def _token(self, form: dict) -> tuple[int, Any, dict]:
        if form.get("grant_type") != "client_credentials":
            self.refused.append(f"grant {form.get('grant_type')}")
            return 400, {"error": "unsupported_grant_type"}, {}
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
                form.get("client_secret", ""), self.client_secret):
            self.refused.append(f"client {form.get('client_id')}")
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}, {}
        scope = form.get("scope", "")
        resource = next((s for s in scope.split() if s.endswith("/.default")), "")
        if not resource:
            self.refused.append(f"scope {scope}")
            return 400, {"error": "invalid_scope", "error_description": f"no /.default scope in '{scope}'"}, {}
        audience = resource.removesuffix("/.default").rstrip("/")
        self.issued.append(Issued(form["client_id"], scope, audience))
        return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                     "access_token": self._jwt(audience)}, {}

    def _jwt(self, audience: str) -> str:
        now = int(time.time())
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{self.tenant}/", "tid": self.tenant,
                  "appid": self.client_id, "oid": str(uuid.uuid5(uuid.NAMESPACE_OID, self.client_id)),
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "ver": "1.0"}
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(claims).encode())
        return head + "." + _b64(hmac.new(self.key, head.encode(), hashlib.sha256).digest())

    def check(self, authorization: str, audience: str) -> str | None:
        """Why this Authorization header would be refused for `audience`, or None."""
        if not authorization.startswith("Bearer "):
            return "no bearer token"
        parts = authorization[len("Bearer "):].split(".")
        if len(parts) != 3:
            return "not a JWT"
        expected = _b64(hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return "token not issued by this cloud's Entra ID"
        claims = json.loads(_unb64(parts[1]))
        if claims["aud"] != audience.rstrip("/"):
            return f"token audience {claims['aud']}, expected {audience.rstrip('/')}"
        if claims["exp"] < time.time():
            return "token expired"
        return None


# -- the front door: one HTTPS server for the cloud's own hosts ---------------------------------------------------
@dataclass
class FrontDoor:
    """Dispatches by Host to Entra ID, Resource Manager (both fakes) and the Azure ML data plane."""

    certificate: Path
    private_key: Path
    entra: FakeEntra
    aml: Any = None  # aml_fake.FakeAzureML with arm_host = ARM_HOST and its data host in DOMAIN
    aci: Any = None  # fake_arm.FakeArm
    location: str = "westeurope"
    refused: list[str] = field(default_factory=list)
    metadata_reads: int = 0

    def __post_init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _front_handler(self))
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.certificate), str(self.private_key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "FrontDoor":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def metadata(self) -> dict:
        """What Azure Stack Hub's Resource Manager answers at /metadata/endpoints?api-version=2015-01-01."""
        return {"galleryEndpoint": f"https://gallery.{DOMAIN}/", "graphEndpoint": f"https://graph.{DOMAIN}/",
                "portalEndpoint": f"https://portal.{DOMAIN}/",
                "authentication": {"loginEndpoint": f"https://{LOGIN_HOST}/", "audiences": [RESOURCE_MANAGER]}}

    def handle(self, method: str, host: str, path: str, headers: dict, body: bytes) -> tuple[int, Any, dict]:
        parts = urlsplit(path)
        if host == LOGIN_HOST:
            return self.entra.handle(method, path, headers, body)
        if host == ARM_HOST and method == "GET" and parts.path == "/metadata/endpoints":
            if parse_qs(parts.query).get("api-version") != ["2015-01-01"]:
                return 400, {"error": {"code": "InvalidApiVersionParameter", "message": "api-version"}}, {}
            self.metadata_reads += 1
            return 200, self.metadata(), {}
        if host not in (ARM_HOST, getattr(self.aml, "data_host", None)):
            self.refused.append(f"{method} https://{host}{path}")
            return 404, {"error": {"code": "NotFound", "message": f"no such host {host}"}}, {}
        anonymous = host != ARM_HOST and parts.path == "/discovery"
        problem = None if anonymous else self.entra.check(headers.get("Authorization", ""), RESOURCE_MANAGER)
        if problem:
            self.refused.append(f"{method} https://{host}{parts.path}: {problem}")
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": problem}}, {}
        payload = json.loads(body) if body else None
        aci_owned = "/providers/microsoft.containerinstance/" in parts.path.lower() or \
            parts.path.lower() in getattr(self.aci, "resources", {})  # the registry, vault and identity it reads
        if host == ARM_HOST and aci_owned:
            self.aci.received.append((method, parts.path, payload))  # as FakeArm's own listener records them
            return self.aci.handle(method, parts.path, parse_qs(parts.query), payload)
        answer = self.aml.handle(method, f"https://{host}{path}", headers, body or None)
        return answer.status, answer.body, answer.headers


def _front_handler(door: FrontDoor) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # an idle keep-alive connection ends its thread

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
            try:
                status, answer, headers = door.handle(self.command, host, self.path, dict(self.headers), body)
            except Exception as error:  # noqa: BLE001 - a fake's bug is reported to the client and the test
                door.refused.append(f"{self.command} {host}{self.path}: {error!r}")
                status, answer, headers = 500, {"error": {"code": "FakeError", "message": repr(error)}}, {}
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler


# -- the proxy: DNS for the cloud's names --------------------------------------------------------------------------
class ConnectProxy:
    """An HTTP proxy on loopback that only tunnels (CONNECT) to the cloud's hosts, each to its local port.

    `route(host)` gives the local port or None (refused with 403 and recorded in `refused`). A tunnel relays
    until either side closes or stays idle for `idle_s`; `stop()` closes every open tunnel."""

    def __init__(self, route: Callable[[str], int | None], idle_s: float = 120):
        self.route, self.idle_s = route, idle_s
        self.tunnels: list[str] = []
        self.refused: list[str] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "ConnectProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.split(" ", 1)[0]
        if method != "CONNECT":
            self.refused.append(request_line)
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host, _, port_text = target.rpartition(":")
        port = self.route(host.lower()) if port_text == "443" else None
        if port is None:
            self.refused.append(target)
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.tunnels.append(target)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        early = head.split(b"\r\n\r\n", 1)[1]
        if early:
            upstream.sendall(early)
        self._relay(client, upstream)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            self._open.update((client, upstream))
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < self.idle_s:
                events = selector.select(timeout=1)
                for key, _ in events:
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    key.data.sendall(data)
                    idle_since = time.monotonic()
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._open.difference_update((client, upstream))
            _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
