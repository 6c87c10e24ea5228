"""The local endpoint's router: Debian's `caddy` as the reverse proxy in front of a local endpoint's deployments.

It behaves like the managed online endpoint's front end:
* `Authorization: Bearer <key>` is required when the endpoint uses key auth (401 otherwise), and removed
  before the request reaches a deployment;
* a request with the `azureml-model-deployment: <name>` header goes to that deployment whatever the
  traffic (404 for a deployment the endpoint does not have);
* other requests are shared by the traffic weights: Caddy 2.6 (Debian's) has no weighted policy, so each
  deployment appears weight/gcd times in the upstream list and the round-robin policy walks that list;
* no deployment with traffic: 404 with the service's message.

Traffic changes are applied through Caddy's admin API (`POST /load`): Caddy keeps its listener and lets
requests in flight finish, so a change drops nothing. The admin API listens on a Unix socket in a private
(0700) folder, not a TCP port, because the configuration holds the key; `persist: false` keeps Caddy
from writing the configuration (key included) to disk.
"""
from __future__ import annotations

import http.client
import json
import math
import shutil
import socket
import subprocess
import time
from functools import reduce
from pathlib import Path
from typing import Any

from amlops.errors import AmlopsError
from amlops.processes import log_tail, stop_process_group

DEPLOYMENT_HEADER = "azureml-model-deployment"
NO_TRAFFIC_BODY = ('{"message": "No valid deployments to route to. Please check that the endpoint has at least '
                   'one deployment with positive weight values or use a deployment specific header to route."}')
UNKNOWN_DEPLOYMENT_BODY = '{"message": "The deployment named in the azureml-model-deployment header does not exist."}'
UNAUTHORIZED_BODY = '{"message": "missing or wrong key: send the header Authorization: Bearer <key>"}'
START_TIMEOUT_S = 15.0
ADMIN_TIMEOUT_S = 10.0


def caddy_binary() -> str:
    found = shutil.which("caddy")
    if not found:
        raise AmlopsError("local online endpoints need Caddy as their router, and `caddy` is not on PATH; "
                          "install it with `apt-get install caddy`")
    return found


def router_config(port: int, admin_socket: Path, key: str | None, upstreams: dict[str, str],
                  traffic: dict[str, int]) -> dict[str, Any]:
    """Caddy's JSON configuration. `upstreams`: deployment -> host:port; `traffic`: deployment -> percent."""
    routes: list[dict[str, Any]] = []
    if key is not None:
        _check_key(key)
        authorized = {"header": {"Authorization": [f"Bearer {key}", f"bearer {key}"]}}
        routes.append({"match": [{"not": [authorized]}], "terminal": True,
                       "handle": [_static(401, UNAUTHORIZED_BODY, {"Www-Authenticate": ['Bearer realm="amlops"']})]})
    for name, dial in sorted(upstreams.items()):
        routes.append({"match": [{"header": {DEPLOYMENT_HEADER: [name]}}], "terminal": True,
                       "handle": [_proxy([dial])]})
    routes.append({"match": [{"header": {DEPLOYMENT_HEADER: ["*"]}}], "terminal": True,
                   "handle": [_static(404, UNKNOWN_DEPLOYMENT_BODY)]})
    weighted = weighted_upstreams({upstreams[name]: percent for name, percent in traffic.items()
                                   if name in upstreams})
    routes.append({"terminal": True, "handle": [_proxy(weighted) if weighted else _static(404, NO_TRAFFIC_BODY)]})
    server = {"listen": [f"127.0.0.1:{port}"], "routes": routes, "automatic_https": {"disable": True}}
    return {"admin": {"listen": f"unix/{admin_socket}", "config": {"persist": False}},
            "apps": {"http": {"http_port": port, "servers": {"endpoint": server}}}}


def weighted_upstreams(weights: dict[str, int]) -> list[str]:
    """Each address weight/gcd times, interleaved, for the round-robin policy: {a: 90, b: 10} -> 9 a and 1 b."""
    positive = {dial: weight for dial, weight in weights.items() if weight > 0}
    if not positive:
        return []
    divisor = reduce(math.gcd, positive.values())
    counts = {dial: weight // divisor for dial, weight in sorted(positive.items())}
    order: list[str] = []
    while any(counts.values()):
        for dial in counts:
            if counts[dial]:
                order.append(dial)
                counts[dial] -= 1
    return order


def _proxy(dials: list[str]) -> dict[str, Any]:
    # try_duration: a connection refused by one upstream is retried on the next for up to 5 s
    return {"handler": "reverse_proxy", "upstreams": [{"dial": dial} for dial in dials],
            "load_balancing": {"selection_policy": {"policy": "round_robin"}, "try_duration": "5s",
                               "try_interval": "100ms"},
            "headers": {"request": {"delete": ["Authorization"]}}}


def _static(status: int, body: str, headers: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"handler": "static_response", "status_code": status, "body": body,
            "headers": {"Content-Type": ["application/json"], **(headers or {})}}


def _check_key(key: str) -> None:
    # Caddy's header matcher treats '*' at either end as a wildcard and expands {placeholders}
    if len(key) < 32 or any(c in key for c in "*{}\\\"' \t\r\n"):
        raise ValueError("an endpoint key must be at least 32 characters of [A-Za-z0-9_-]")


def start_router(config: dict[str, Any], folder: Path) -> int:
    """Start caddy detached (its own session, it outlives the command) with `config`; returns its pid once
    the admin socket and the listener answer."""
    binary = caddy_binary()
    log_path = folder / "router.log"
    # the configuration (it holds the key) goes through a pipe, never to a file
    with open(log_path, "ab") as log:
        process = subprocess.Popen([binary, "run", "--config", "/dev/stdin"], stdin=subprocess.PIPE,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(json.dumps(config).encode())
    process.stdin.close()
    port = int(config["apps"]["http"]["servers"]["endpoint"]["listen"][0].rsplit(":", 1)[1])
    admin_socket = Path(config["admin"]["listen"].removeprefix("unix/"))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AmlopsError(f"caddy exited with code {process.returncode} while starting the endpoint router; "
                              f"the end of its log ({log_path}):\n{log_tail(log_path)}")
        if _listening(port) and admin_socket.exists() and router_alive(admin_socket):
            return process.pid
        time.sleep(0.05)
    stop_process_group(process.pid)
    raise AmlopsError(f"the endpoint router (caddy) did not listen on port {port} within {START_TIMEOUT_S:g} s; "
                      f"see {log_path}")


def load_config(admin_socket: Path, config: dict[str, Any]) -> None:
    """Replace the running configuration (zero downtime: the listener and requests in flight are kept)."""
    status, body = _admin(admin_socket, "POST", "/load", json.dumps(config).encode())
    if status != 200:
        raise AmlopsError(f"the endpoint router refused the new routes (HTTP {status}): {body[:300]}")


def _admin(admin_socket: Path, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    connection = _UnixConnection(str(admin_socket), ADMIN_TIMEOUT_S)
    try:
        # Caddy allows only an empty Host on a Unix-socket admin listener (its DNS-rebinding protection)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", "Host": ""})
        response = connection.getresponse()
        return response.status, response.read(64 * 1024).decode("utf-8", errors="replace")
    except OSError as error:
        raise AmlopsError(f"the endpoint router's admin socket {admin_socket} did not answer ({error}); "
                          "the router is not running: `amlops endpoints show` reports it") from None
    finally:
        connection.close()


def router_alive(admin_socket: Path) -> bool:
    try:
        status, body = _admin(admin_socket, "GET", "/config/admin/listen")
    except AmlopsError:
        return False
    if status != 200:
        raise AmlopsError(f"the endpoint router's admin socket {admin_socket} answered HTTP {status}: {body[:200]}")
    return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)
