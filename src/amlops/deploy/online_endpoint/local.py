"""Local online endpoints: each deployment a local inference server (amlops.deploy.local), the endpoint a
Caddy router on a loopback port (amlops.deploy.online_endpoint.router).

State lives in the local workspace under `endpoints/<name>/` (a 0700 folder): `endpoint.json` (port,
traffic, deployments, router pid and admin socket) and `key` (0600). Every change rewrites the state
under a file lock and then loads the new routes into the running router; a router that is gone (a
reboot) is started again from the state.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from amlops.deploy.local.target import current_status, delete_local, deploy_local
from amlops.deploy.online_endpoint.model import DeploymentSpec, Endpoint, EndpointDeployment, check_name
from amlops.deploy.online_endpoint.router import load_config, router_alive, router_config, start_router
from amlops.errors import AmlopsError, NotFoundError
from amlops.processes import command_line, process_alive, stop_process_group
from amlops.workspace.local.workspace import LocalWorkspace


class LocalEndpoints:
    kind = "local"

    def __init__(self, ws: LocalWorkspace, on_info: Callable[[str], None] = print):
        self.ws = ws
        self.root = ws.root / "endpoints"
        self.on_info = on_info

    # reading

    def get(self, name: str) -> Endpoint | None:
        check_name("endpoint", name)
        state = self._read(name)
        return None if state is None else self._endpoint(state)

    def list(self) -> list[Endpoint]:
        if not self.root.is_dir():
            return []
        states = (self._read(folder.name) for folder in sorted(self.root.iterdir()) if folder.is_dir())
        return [self._endpoint(state) for state in states if state is not None]

    def key(self, name: str) -> str | None:
        path = self._folder(name) / "key"
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None

    # changing

    def create(self, name: str, auth_mode: str) -> Endpoint:
        check_name("endpoint", name)
        if auth_mode != "key":
            raise AmlopsError(f"auth mode '{auth_mode}' needs Azure ML (--backend azure); local endpoints use key auth")
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked(name):
            if self._read(name) is not None:
                return self._endpoint(self._read(name))
            key_file = folder / "key"
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            state = {"name": name, "auth_mode": auth_mode, "port": _free_port(), "traffic": {}, "deployments": {},
                     "admin_socket": str(Path(tempfile.mkdtemp(prefix="amlops-router-")) / "admin.sock")}
            self._apply(state)
            return self._endpoint(state)

    def create_deployment(self, endpoint: str, spec: DeploymentSpec) -> None:
        check_name("deployment", spec.name)
        self._require(endpoint)
        local_name = _local_name(endpoint, spec.name)
        deployment = deploy_local(self.ws, spec.model, local_name, spec.scoring_folder, spec.entry_script,
                                  on_info=self.on_info)
        with self._locked(endpoint):
            state = self._require(endpoint)
            state["deployments"][spec.name] = {"local_name": local_name, "model": spec.model.ref,
                                               "upstream": deployment.scoring_uri.split("//", 1)[1].split("/")[0],
                                               "instance_type": spec.instance_type,
                                               "instance_count": spec.instance_count}
            state["traffic"][spec.name] = 0
            self._apply(state)

    def set_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None) -> Endpoint:
        if mirror:
            raise AmlopsError("mirror traffic needs Azure ML (--backend azure): the local router does not copy "
                              "requests; leave mirror traffic at 0 locally")
        with self._locked(endpoint):
            state = self._require(endpoint)
            _check_traffic(endpoint, traffic, state["deployments"])
            state["traffic"] = {name: int(traffic.get(name, 0)) for name in state["deployments"]}
            self._apply(state)
            return self._endpoint(state)

    def request_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        self.set_traffic(endpoint, traffic)  # the local router applies it at once

    def request_deployment_delete(self, endpoint: str, deployment: str) -> None:
        self.delete_deployment(endpoint, deployment)  # stopping a local server takes a second at most

    def delete_deployment(self, endpoint: str, deployment: str) -> None:
        with self._locked(endpoint):
            state = self._require(endpoint)
            entry = state["deployments"].get(deployment)
            if entry is None:
                return
            if state["traffic"].get(deployment, 0) > 0:
                raise AmlopsError(f"deployment {deployment} still takes {state['traffic'][deployment]}% of endpoint "
                                  f"{endpoint}'s traffic; move the traffic first (`amlops endpoints traffic`)")
            del state["deployments"][deployment]
            state["traffic"].pop(deployment, None)
            self._apply(state)  # the router stops sending to it before the server stops
        if self.ws.find_deployment(entry["local_name"]) is not None:
            delete_local(self.ws, entry["local_name"])

    def delete(self, name: str) -> None:
        with self._locked(name):
            state = self._require(name)
            for entry in state["deployments"].values():
                if self.ws.find_deployment(entry["local_name"]) is not None:
                    delete_local(self.ws, entry["local_name"])
            _stop_router(state)
            shutil.rmtree(Path(state["admin_socket"]).parent, ignore_errors=True)
        shutil.rmtree(self._folder(name), ignore_errors=True)

    # state

    def _folder(self, name: str) -> Path:
        return self.root / check_name("endpoint", name)

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self._folder(name) / "endpoint.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            raise AmlopsError(f"{path} is damaged; delete the endpoint with `amlops endpoints delete {name}`") from None

    def _require(self, name: str) -> dict[str, Any]:
        state = self._read(name)
        if state is None:
            raise NotFoundError(f"endpoint {name} not found in {self.ws.root}; `amlops endpoints list` shows them")
        return state

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _apply(self, state: dict[str, Any]) -> None:
        """Write the state, then route as it says (starting the router when it is not running)."""
        upstreams = {name: entry["upstream"] for name, entry in state["deployments"].items()}
        config = router_config(state["port"], Path(state["admin_socket"]), self.key(state["name"]), upstreams,
                               state["traffic"])
        if _router_running(state):
            load_config(Path(state["admin_socket"]), config)
        else:
            Path(state["admin_socket"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            state["router_pid"] = start_router(config, self._folder(state["name"]))
        path = self._folder(state["name"]) / "endpoint.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)

    def _endpoint(self, state: dict[str, Any]) -> Endpoint:
        deployments = []
        for name, entry in sorted(state["deployments"].items()):
            local = self.ws.find_deployment(entry["local_name"])
            status = current_status(local) if local is not None else "Dead"
            deployments.append(EndpointDeployment(name, entry["model"], status, entry["instance_type"],
                                                  entry["instance_count"]))
        status = "Succeeded" if _router_running(state) else "RouterDown"
        return Endpoint(state["name"], f"http://127.0.0.1:{state['port']}/score", state["auth_mode"],
                        dict(state["traffic"]), {}, tuple(deployments), status)


def _check_traffic(endpoint: str, traffic: dict[str, int], deployments: dict[str, Any]) -> None:
    unknown = sorted(set(traffic) - set(deployments))
    if unknown:
        raise AmlopsError(f"endpoint {endpoint} has no deployment {', '.join(unknown)}; its deployments: "
                          f"{', '.join(sorted(deployments)) or 'none'}")
    if any(not isinstance(v, int) or v < 0 for v in traffic.values()) or sum(traffic.values()) not in (0, 100):
        raise AmlopsError(f"traffic {traffic} for endpoint {endpoint} must be whole percentages that add up to 100 "
                          "(or all 0)")


def _router_running(state: dict[str, Any]) -> bool:
    pid = state.get("router_pid")
    return bool(pid) and process_alive(pid) and "caddy" in command_line(pid) \
        and router_alive(Path(state["admin_socket"]))


def _stop_router(state: dict[str, Any]) -> None:
    pid = state.get("router_pid")
    if pid and process_alive(pid) and "caddy" in command_line(pid):
        stop_process_group(pid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _local_name(endpoint: str, deployment: str) -> str:
    """The local deployment serving `deployment` of `endpoint`: readable, within the deployment name rule (lowercase,
    single hyphens, at most 63 characters) and never the same for two pairs (the hash of the pair)."""
    readable = re.sub(r"-+", "-", f"{endpoint[:24]}-{deployment[:24]}".lower()).strip("-")
    return f"{readable}-{hashlib.sha256(f'{endpoint}/{deployment}'.encode()).hexdigest()[:8]}"
