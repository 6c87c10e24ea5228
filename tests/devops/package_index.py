"""A package index and an authenticating proxy on loopback, for the launcher's install tests.

`PackageIndex` serves a folder as a PEP 503 simple index (`/simple/<project>/` lists its files), over HTTP or
over HTTPS with a certificate from a test CA (`TestCA`), optionally slowly (to cancel an install in flight).
`Proxy` is an HTTP proxy that tunnels CONNECT and forwards absolute-URI requests, plays DNS for made-up host
names (`route`), records every target and the Proxy-Authorization it was given, and refuses requests
without the expected credentials with 407, as a corporate proxy does.
"""
from __future__ import annotations

import base64
import hashlib
import html
import selectors
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel with a valid RECORD (what pip and uv check)."""
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = dict(files)
    files[f"{dist}.dist-info/METADATA"] = metadata
    files[f"{dist}.dist-info/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        archive.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


class TestCA:
    """A CA and a server certificate it signs for the given names (openssl, as an enterprise PKI would issue)."""

    __test__ = False

    def __init__(self, folder: Path, names: tuple[str, ...]):
        folder.mkdir(parents=True, exist_ok=True)
        self.cert, key = folder / "ca.pem", folder / "ca.key"
        self.server_cert, self.server_key = folder / "server.pem", folder / "server.key"
        csr, ext = folder / "server.csr", folder / "server.ext"
        run = lambda *args: subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", self.cert, "-days", "2",
            "-subj", "/CN=amlops test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.server_key, "-out", csr, "-subj", f"/CN={names[0]}")
        sans = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", key, "-CAcreateserial", "-out",
            self.server_cert, "-days", "2", "-extfile", ext)


class PackageIndex:
    """`folder/<project>/<files>` served at `/simple/<project>/`; `delay_s` holds every file download."""

    def __init__(self, folder: Path, ca: TestCA | None = None, delay_s: float = 0.0):
        self.folder, self.delay_s = Path(folder), delay_s
        self.requests: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                index.requests.append(self.path)
                status, body, kind = index.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(ca.server_cert, ca.server_key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        port = self.port if port is None else port
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}{'' if port == default else f':{port}'}/simple/"

    def answer(self, path: str) -> tuple[int, bytes, str]:
        parts = [part for part in path.split("?")[0].split("/") if part]
        if len(parts) == 2 and parts[0] == "simple":
            project = self.folder / parts[1].lower().replace("_", "-")
            if project.is_dir():
                links = "".join(f'<a href="{html.escape(f.name)}">{html.escape(f.name)}</a>\n'
                                for f in sorted(project.iterdir()))
                return 200, f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode(), "text/html"
        if len(parts) == 3 and parts[0] == "simple":
            file = self.folder / parts[1].lower().replace("_", "-") / parts[2]
            if file.is_file():
                time.sleep(self.delay_s)
                return 200, file.read_bytes(), "application/octet-stream"
        return 404, b"not found", "text/plain"

    def start(self) -> "PackageIndex":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Proxy:
    """An HTTP proxy on loopback: CONNECT tunnels and absolute-URI GETs, to `route(host)`'s local port."""

    def __init__(self, route: Callable[[str], int | None], credentials: tuple[str, str] | None = None):
        self.route = route
        self.expected = None if credentials is None else "Basic " + base64.b64encode(
            f"{credentials[0]}:{credentials[1]}".encode()).decode()
        self.targets: list[str] = []
        self.authorizations: list[str | None] = []
        self.refused: list[str] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "Proxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        authorization = headers.get("proxy-authorization")
        self.authorizations.append(authorization)
        if self.expected is not None and authorization != self.expected:
            self.refused.append(target)
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                           b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:  # http://host[:port]/path
            host_port = target.split("/")[2] if "://" in target else ""
            host, _, port = host_port.partition(":")
        local = self.route(host.lower())
        if local is None:
            self.refused.append(target)
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.targets.append(f"{method} {target}")
        upstream = socket.create_connection(("127.0.0.1", local), timeout=10)
        rest = head.split(b"\r\n\r\n", 1)[1]
        if method == "CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            path = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
            kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-", "connection"))]
            upstream.sendall("\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
                             .encode("latin-1"))
        if rest:
            upstream.sendall(rest)
        _relay(client, upstream)


def _relay(client: socket.socket, upstream: socket.socket, idle_s: float = 60) -> None:
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ, upstream)
    selector.register(upstream, selectors.EVENT_READ, client)
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_s:
            for key, _ in selector.select(timeout=1):
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
        for sock in (client, upstream):
            try:
                sock.close()
            except OSError:
                pass


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
