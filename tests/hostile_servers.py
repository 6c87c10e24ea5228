"""Real HTTP servers on loopback that misbehave: never answer, drip a byte a second, send a huge or an
endless body, redirect elsewhere, echo the request's headers. Each records what it received."""
from __future__ import annotations

import resource
import socket
import threading
import time

import pytest

MEMORY_CAP = 1024 * 1024 * 1024


class Hostile:
    """A raw TCP server on 127.0.0.1; `behaviour(conn, request_bytes)` answers each connection."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/score", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            request = _read_request(conn)
            self.requests.append(request)
            self.behaviour(self, conn, request)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


@pytest.fixture
def servers():
    """start(behaviour) -> a Hostile server, closed at the end of the test."""
    started = []

    def start(behaviour):
        server = Hostile(behaviour)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


def cap_memory() -> None:
    """preexec_fn for a client under test: 1 GB of address space, so an unbounded read fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def header(request: bytes, name: str) -> str | None:
    for line in request.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return None


def never_answers(server, conn, request) -> None:
    server.closed.wait(120)


def drips(server, conn, request) -> None:
    """Headers and a body one byte a second, forever (each read gets something before its timeout)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not server.closed.is_set():
        conn.sendall(b"1\r\n \r\n")
        time.sleep(1)


def drips_headers(server, conn, request) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
        if server.closed.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(1)


def huge_declared(server, conn, request) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n")
    _flood(server, conn)


def endless(server, conn, request) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    _flood(server, conn)


def _flood(server, conn) -> None:
    block = b"[" * 65536
    while not server.closed.is_set():
        conn.sendall(block)


def answer(status: int, body: bytes, extra: str = ""):
    def behaviour(server, conn, request) -> None:
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"{extra}Connection: close\r\n\r\n".encode() + body)
    return behaviour


def redirect_to(location: str, status: int = 307):
    return answer(status, b"", f"Location: {location}\r\n")


def echo_authorization(server, conn, request) -> None:
    """A 401 whose body echoes the Authorization header raw, JSON-quoted and form-encoded."""
    import json
    from urllib.parse import quote_plus

    value = header(request, "Authorization") or ""
    body = json.dumps({"message": f"bad credentials {value}", "form": quote_plus(value)}).encode()
    answer(401, body)(server, conn, request)
