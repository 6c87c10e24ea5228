"""One HTTP request with hard limits: a connect and read timeout, an overall deadline that a server
dripping a byte at a time cannot stretch (a watchdog shuts the socket at the deadline), a bounded body,
and no redirects (a redirect is returned as it is, so credentials never travel to another host).

Proxies are honoured as urllib honours them (`http_proxy`, `https_proxy`, `no_proxy`; HTTPS through a
CONNECT tunnel), except for loopback addresses, which are always reached directly."""
from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
    connection, path, proxy_headers = _connection(parts, min(connect_timeout_s, timeout_s))
    watchdog = _Watchdog(connection, timeout_s)
    try:
        connection.connect()
        connection.sock.settimeout(max(0.001, min(timeout_s, deadline - time.monotonic())))
        connection.request(method, path, body=body, headers={**(headers or {}), **proxy_headers})
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


def _connection(parts, timeout_s: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """The connection to open (to the server, or to the proxy for it), the request target to send and the
    headers a plain-HTTP proxy needs."""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    https = parts.scheme == "https"
    proxy = _proxy(parts)
    if proxy is None:
        if https:
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout_s,
                                               context=ssl.create_default_context()), path, {}
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s), path, {}
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    auth = {}
    if proxy_parts.username:
        pair = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}".encode()
        auth = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
    if https:
        connection = http.client.HTTPSConnection(proxy_parts.hostname, proxy_parts.port or 80, timeout=timeout_s,
                                                 context=ssl.create_default_context())
        connection.set_tunnel(parts.hostname, parts.port or 443, headers=auth)
        return connection, path, {}
    connection = http.client.HTTPConnection(proxy_parts.hostname, proxy_parts.port or 80, timeout=timeout_s)
    return connection, parts.geturl(), auth


def _proxy(parts) -> str | None:
    host = parts.hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return None
    if urllib.request.proxy_bypass(f"{host}:{parts.port}" if parts.port else host):
        return None
    return urllib.request.getproxies().get(parts.scheme)


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
