"""One HTTP request with hard limits: a connect and read timeout, an overall deadline that a server
dripping a byte at a time cannot stretch (a watchdog shuts the socket at the deadline), a bounded body,
and no redirects (a redirect is returned as it is, so credentials never travel to another host)."""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from amlops.errors import AmlopsError

MAX_BODY_BYTES = 16 * 1024 * 1024
CHUNK = 64 * 1024


class NetworkError(AmlopsError):
    """The request did not get a complete answer (refused, reset, timed out)."""


class DeadlineExceeded(NetworkError):
    pass


class BodyTooLarge(AmlopsError):
    pass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def check_url(url: str, what: str = "URL") -> None:
    """http(s)://host[:port]/... or one clear line."""
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise AmlopsError(f"{what} {url!r} is not an http(s) URL; give one like http://127.0.0.1:5001/score "
                          "or https://<service>.<region>.azurecontainer.io/score")


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout_s: float = 30.0, connect_timeout_s: float = 10.0,
            max_body: int = MAX_BODY_BYTES) -> Response:
    """Send one request and read the whole answer within timeout_s (the overall deadline)."""
    check_url(url)
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": ssl.create_default_context()} if parts.scheme == "https" else {}
    connection = connection_type(parts.hostname, parts.port, timeout=min(connect_timeout_s, timeout_s), **kwargs)
    watchdog = _Watchdog(connection, timeout_s)
    try:
        connection.connect()
        connection.sock.settimeout(max(0.001, min(timeout_s, deadline - time.monotonic())))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = _read_bounded(response, max_body, url)
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as error:
        if watchdog.fired:
            raise DeadlineExceeded(f"no complete answer from {_where(parts)} within {timeout_s:g} s") from None
        raise NetworkError(f"connection error with {_where(parts)} ({_reason(error)})") from None
    finally:
        watchdog.cancel()
        connection.close()


def _read_bounded(response: http.client.HTTPResponse, max_body: int, url: str) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_body:
        raise BodyTooLarge(f"the answer from {url} is {int(declared):,} bytes, over the limit of {max_body:,}; "
                           "is this the scoring endpoint?")
    chunks, size = [], 0
    while True:
        chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge(f"the answer from {url} is over the limit of {max_body:,} bytes; "
                               "is this the scoring endpoint?")
        chunks.append(chunk)


class _Watchdog:
    """Shuts the connection's socket at the deadline, which ends any read or write in progress."""

    def __init__(self, connection: http.client.HTTPConnection, timeout_s: float):
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _where(parts) -> str:
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _reason(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    text = str(getattr(error, "strerror", None) or error) or type(error).__name__
    return text.splitlines()[0][:200]
