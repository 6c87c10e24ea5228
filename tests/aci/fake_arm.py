"""A loopback fake of Azure Resource Manager for Microsoft.ContainerInstance (api-version 2023-05-01).

A real HTTPS server on 127.0.0.1 answering the way ARM does, as far as azure-mgmt-containerinstance can
tell:

* every request needs `Authorization: Bearer ...` (else 401) and `api-version=2023-05-01` (else 400);
* PUT containerGroups/{name} validates the body against `#/definitions/ContainerGroup` of the official
  swagger with a plain JSON-schema validator, then strictly (a property the spec does not define, or a
  readOnly one, is refused: the service would drop or reject it), then what the service checks itself
  (names, volumes, ports, env values, base64 secret volumes, resource limits). A body that fails gets 400
  with the service's CloudError shape and is kept in `invalid_bodies`;
* the subscription must have the resource provider registered (`registered = False`: every request gets
  ARM's 409 MissingSubscriptionRegistration);
* a PUT on an existing group may not change what ACI can only set at creation (OS type, restart policy, CPU,
  memory, GPU, ports, IP address, DNS label): 409 InvalidContainerGroupUpdate, as the service answers;
* images must be pullable: one from a private registry needs an imageRegistryCredentials entry for its server
  with a password or one of the group's own identities (else 400 InaccessibleImage), and anonymous Docker Hub
  pulls hit its rate limit (409 RegistryErrorResponse, Azure/azure-cli#29300; `docker_hub_limited`);
* the CPU the groups of the region request may not pass the subscription's regional quota of standard cores
  (`standard_cores_quota`; None: not enforced): 409 ContainerGroupQuotaReached, the message as ACI words it;
* a user-assigned identity named in the group must exist (`resources`, which GET also serves: the workspace's
  registry, key vault and identity as ARM returns them);
* a valid PUT answers 201 (200 when replacing) with provisioningState Pending and an
  `Azure-AsyncOperation` header; the operation and the group's instance view then follow the group's
  `Script` one step per GET, like a host pulling images and starting containers;
* GET answers without secrets (secure environment values and secret volume contents are never returned),
  with the public IP, the FQDN (hashed per resource group for the ResourceGroupReuse scope) and instance
  views; `containers/{c}/logs?tail=n` answers from the script's logs; DELETE removes the group;
* `restart(name, after)` moves the fake clock on and restarts the group as a host does: with the definition as
  stored (secrets included, as it was PUT), the containers run their commands again.

`received` keeps every request (method, path, body); bodies as sent, so tests can check what went over.
"""
from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import jsonschema

from support import SPECS

API_VERSION = "2023-05-01"
SWAGGER = (SPECS / "azure" / "rest-api-specs" / "specification" / "containerinstance" / "resource-manager" /
           "Microsoft.ContainerInstance" / "stable" / API_VERSION / "containerInstance.json")
GROUP_PATH = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerInstance/"
                        r"containerGroups/([^/]+)(/containers/([^/]+)/logs)?$", re.IGNORECASE)
LIST_PATH = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerInstance/"
                       r"containerGroups$", re.IGNORECASE)
OPERATION_PATH = re.compile(r"^/subscriptions/([^/]+)/providers/Microsoft\.ContainerInstance/locations/([^/]+)/"
                            r"operations/([^/]+)$", re.IGNORECASE)
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_CPU, MAX_MEMORY_GB = 4.0, 16.0
NAMESPACE = "Microsoft.ContainerInstance"
# ARM's answer when the subscription never registered the resource provider (https://aka.ms/rps-not-found;
# https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-register-resource-provider).
NOT_REGISTERED = (409, "MissingSubscriptionRegistration",
                  f"The subscription is not registered to use namespace '{NAMESPACE}'. "
                  "See https://aka.ms/rps-not-found for how to register subscriptions.")
# ACI refuses these changes on an existing group (https://learn.microsoft.com/azure/container-instances/
# container-instances-update#properties-that-require-container-delete); the service's answer, code and message
# as reported in MicrosoftDocs/azure-docs#38067 and #37604 (a changed DNS label gets it too); ports: issue 14.
# https://learn.microsoft.com/azure/container-instances/container-instances-troubleshooting ("Unable to pull
# image"); the Docker Hub answer as reported in Azure/azure-cli#29300.
INACCESSIBLE_IMAGE = (400, "InaccessibleImage", "The image '{image}' in container group '{name}' is not accessible. "
                      "Please check the image and registry credential.")
DOCKER_HUB_LIMIT = (409, "RegistryErrorResponse", "An error response is received from the docker registry "
                    "'index.docker.io'. Please retry later.")
PUBLIC_REGISTRIES = {"mcr.microsoft.com"}
# "Standard sku cores (CPUs) per region per subscription" (https://learn.microsoft.com/azure/container-instances/
# container-instances-quotas); the message as reported in MicrosoftDocs/azure-docs#51738, the code as ACI reports it
# in deployment errors (AzureContainerInstance/ContainerGroupQuotaReached); 409 as ARM's other quota refusals.
CORE_QUOTA = (409, "ContainerGroupQuotaReached", "Resource type 'Microsoft.ContainerInstance/containerGroups' "
              "container group quota 'StandardCores' exceeded in region '{region}'. Limit: '{limit:g}', Usage: "
              "'{usage:g}' Requested: '{requested:g}'.")
IMMUTABLE_UPDATE = (409, "InvalidContainerGroupUpdate",
                    "The updates on container group '{name}' are invalid. If you are going to update the os type, "
                    "restart policy, network profile, CPU, memory or GPU resources for a container group, you must "
                    "delete it first and then create a new one.")


def load_swagger() -> dict:
    return json.loads(SWAGGER.read_text(encoding="utf-8-sig"))


# -- scripts: what the "host" does with a group -------------------------------------------------------------
def container_state(state: str, exit_code: int | None = None, restarts: int = 0, detail: str = "",
                    previous_exit: int | None = None) -> dict:
    view: dict[str, Any] = {"restartCount": restarts, "currentState": {"state": state, "detailStatus": detail},
                            "events": []}
    if exit_code is not None:
        view["currentState"]["exitCode"] = exit_code
    if previous_exit is not None:
        view["previousState"] = {"state": "Terminated", "exitCode": previous_exit}
    return view


@dataclass
class Step:
    provisioning: str  # Pending | Creating | Succeeded | Failed
    state: str  # Pending | Running | Stopped | Failed
    containers: dict[str, dict] = field(default_factory=dict)  # name -> instance view (default: Waiting)
    events: list[dict] = field(default_factory=list)


@dataclass
class Script:
    steps: list[Step]
    logs: dict[str, str] = field(default_factory=dict)
    on_running: Callable[[dict, datetime], None] | None = None  # the body as received, the hosts' clock
    on_deleted: Callable[[], None] | None = None
    error: dict | None = None  # the async operation's error when the last step Failed


def healthy_script(on_running: Callable[[dict, datetime], None] | None = None,
                   logs: dict | None = None) -> Script:
    waiting = container_state("Waiting", detail="ContainerCreating")
    return Script([
        Step("Pending", "Pending", {"inference": waiting, "gateway": waiting}, [_event("Pulling", "pulling image")]),
        Step("Creating", "Pending", {"inference": container_state("Running"), "gateway": waiting}),
        Step("Succeeded", "Running", {"inference": container_state("Running"), "gateway": container_state("Running")},
             [_event("Started", "Started container")]),
    ], logs or {}, on_running)


def _event(name: str, message: str, kind: str = "Normal") -> dict:
    return {"count": 1, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
            "name": name, "message": message, "type": kind}


# -- validation -----------------------------------------------------------------------------------------------
class BodyChecker:
    def __init__(self, swagger: dict):
        self.definitions = swagger["definitions"]
        self.plain = jsonschema.Draft4Validator({"$ref": "#/definitions/ContainerGroup",
                                                 "definitions": self.definitions})

    def problems(self, name: str, body: Any) -> list[str]:
        found = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                 for e in self.plain.iter_errors(body)]
        if found:
            return found
        self._strict(body, {"$ref": "#/definitions/ContainerGroup"}, "", found)
        return found or self._service_rules(name, body)

    def _resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        if "allOf" in schema:
            merged = {"properties": dict(schema.get("properties", {})), "type": "object"}
            for part in schema["allOf"]:
                merged["properties"].update(self._resolve(part).get("properties", {}))
            return merged
        return schema

    def _strict(self, value: Any, schema: dict, path: str, found: list[str]) -> None:
        schema = self._resolve(schema)
        if isinstance(value, dict) and "properties" in schema:
            for key, item in value.items():
                declared = schema["properties"].get(key)
                if declared is None:
                    found.append(f"{path}/{key}: not a property of the ACI API {API_VERSION}")
                elif self._resolve(declared).get("readOnly") or declared.get("readOnly"):
                    found.append(f"{path}/{key}: read-only, must not be sent")
                else:
                    self._strict(item, declared, f"{path}/{key}", found)
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self._strict(item, schema["items"], f"{path}/{index}", found)

    def _service_rules(self, name: str, body: dict) -> list[str]:
        props = body["properties"]
        found = [] if NAME.match(name) and len(name) <= 63 else [f"container group name '{name}' is invalid"]
        containers, inits = props["containers"], props.get("initContainers", [])
        names = [c["name"] for c in containers + inits]
        found += [f"container name '{n}' is invalid" for n in names if not NAME.match(n)]
        if len(set(names)) != len(names):
            found.append("container names must be unique")
        volumes = {v["name"]: v for v in props.get("volumes", [])}
        for volume in volumes.values():
            kinds = [k for k in ("azureFile", "emptyDir", "secret", "gitRepo") if k in volume]
            if len(kinds) != 1:
                found.append(f"volume {volume['name']} must have exactly one type")
            for file, data in (volume.get("secret") or {}).items():
                try:
                    base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    found.append(f"secret volume {volume['name']} file {file} is not base64")
        cpu = memory = 0.0
        for container in containers + inits:
            p = container["properties"]
            for mount in p.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    found.append(f"{container['name']} mounts unknown volume {mount['name']}")
            for env in p.get("environmentVariables", []):
                if ("value" in env) == ("secureValue" in env):
                    found.append(f"{container['name']} env {env['name']} needs exactly one of value, secureValue")
            if container in containers:
                cpu += p["resources"]["requests"]["cpu"]
                memory += p["resources"]["requests"]["memoryInGB"]
        if cpu > MAX_CPU or memory > MAX_MEMORY_GB:
            found.append(f"the group requests {cpu:g} CPU and {memory:g} GB, "
                         f"over {MAX_CPU:g} CPU / {MAX_MEMORY_GB:g} GB")
        found += self._ip_rules(props, containers)
        if inits and props.get("osType") != "Linux":
            found.append("init containers need osType Linux")
        return found

    @staticmethod
    def _ip_rules(props: dict, containers: list[dict]) -> list[str]:
        ip = props.get("ipAddress")
        if not ip:
            return []
        exposed = {p["port"] for c in containers for p in c["properties"].get("ports", [])}
        found = [f"group port {p['port']} is not exposed by any container" for p in ip["ports"]
                 if p["port"] not in exposed]
        label = ip.get("dnsNameLabel")
        if label is not None and not re.match(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$", label):
            found.append(f"dnsNameLabel '{label}' is invalid")
        return found


def immutable_changes(stored: dict, new: dict) -> list[str]:
    """What `new` changes of `stored` that ACI only sets when it creates a group."""
    old_props, new_props = stored["properties"], new["properties"]
    changes = [key for key in ("osType", "restartPolicy", "subnetIds", "sku")
               if old_props.get(key) != new_props.get(key)]
    old_ip, new_ip = old_props.get("ipAddress") or {}, new_props.get("ipAddress") or {}
    changes += [f"ipAddress.{key}" for key in ("type", "ports", "dnsNameLabel", "autoGeneratedDomainNameLabelScope")
                if old_ip.get(key) != new_ip.get(key)]
    old_containers = {c["name"]: c["properties"] for c in old_props["containers"]}
    for container in new_props["containers"]:
        before = old_containers.get(container["name"])
        if before is None:
            continue
        if before["resources"] != container["properties"]["resources"]:
            changes.append(f"{container['name']}.resources")
        if before.get("ports") != container["properties"].get("ports"):
            changes.append(f"{container['name']}.ports")
    return changes


def image_registry(image: str) -> str:
    first = image.split("/", 1)[0]
    return first.lower() if "/" in image and ("." in first or ":" in first) else "docker.io"


def pull_problem(name: str, body: dict, docker_hub_limited: bool) -> tuple[int, str, str] | None:
    """Why ACI could not pull one of the group's images, as the service's (status, code, message)."""
    props = body["properties"]
    identities = {i.lower() for i in ((body.get("identity") or {}).get("userAssignedIdentities") or {})}
    credentials = {c["server"].lower(): c for c in props.get("imageRegistryCredentials", [])}
    for container in props["containers"] + props.get("initContainers", []):
        image = container["properties"]["image"]
        registry = image_registry(image)
        credential = credentials.get(registry)
        if registry in PUBLIC_REGISTRIES:
            continue
        if registry == "docker.io" and credential is None:
            if docker_hub_limited:
                return DOCKER_HUB_LIMIT
            continue
        usable = credential is not None and (credential.get("password") or
                                             (credential.get("identity") or "").lower() in identities)
        if not usable:
            status, code, message = INACCESSIBLE_IMAGE
            return status, code, message.format(image=image, name=name)
    return None


# -- the server -----------------------------------------------------------------------------------------------
@dataclass
class Group:
    name: str
    body: dict  # as received, secrets included
    script: Script
    step: int = 0
    ip: str = "20.0.0.1"
    started: bool = False
    restarts: int = 0


class FakeArm:
    def __init__(self, certificate: Path, private_key: Path, resource_group: str = "rg-ml",
                 subscription: str = "00000000-0000-0000-0000-0000000000aa", tenant: str = "tenant-1"):
        self.resource_group, self.subscription, self.tenant = resource_group, subscription, tenant
        self.checker = BodyChecker(load_swagger())
        self.groups: dict[str, Group] = {}
        self.received: list[tuple[str, str, Any]] = []
        self.invalid_bodies: list[tuple[dict, list[str]]] = []
        self.refused_updates: list[tuple[str, list[str]]] = []
        self.refused_puts: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.registered = True  # the subscription has registered Microsoft.ContainerInstance
        self.docker_hub_limited = True  # anonymous Docker Hub pulls are over the rate limit
        self.standard_cores_quota: float | None = None  # the region's core quota (None: not enforced)
        self.resources: dict[str, dict] = {}  # other ARM resources by lower-case id (GET only)
        self.clock = datetime.now(timezone.utc)  # the hosts' clock; restart() moves it on
        self.script_for: Callable[[str, dict], Script] = lambda name, body: healthy_script()
        self.lock = threading.RLock()
        self.server = https_server(json_handler(self._respond), certificate, private_key)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> "FakeArm":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for group in list(self.groups.values()):
            if group.script.on_deleted:
                group.script.on_deleted()

    def puts(self) -> list[dict]:
        return [body for method, path, body in self.received if method == "PUT"]

    # handlers

    def _respond(self, method: str, path: str, query: dict, headers: Any, body: Any) -> tuple[int, Any, dict]:
        self.received.append((method, path, body))
        if not (headers.get("Authorization") or "").startswith("Bearer "):
            return 401, _error("AuthenticationFailed", "no bearer token"), {}
        return self.handle(method, path, query, body)

    def restart(self, name: str, after: timedelta) -> None:
        """The host restarts group `name` `after` from now (maintenance, a crash): the clock moves on and every
        container runs again from the definition as stored (a restart never asks the deployer again)."""
        with self.lock:
            group = self.groups[name]
            self.clock += after
            group.restarts += 1
            group.step = len(group.script.steps) - 1
            group.started = True
            if group.script.on_deleted:
                group.script.on_deleted()
            if group.script.on_running:
                group.script.on_running(copy.deepcopy(group.body), self.clock)

    def handle(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any, dict]:
        if method == "GET" and path.lower() in self.resources and query.get("api-version"):
            return 200, self.resources[path.lower()], {}
        if query.get("api-version") != [API_VERSION]:
            return 400, _error("InvalidApiVersionParameter", f"api-version must be {API_VERSION}"), {}
        if not self.registered and NAMESPACE.lower() in path.lower():
            status, code, message = NOT_REGISTERED
            return status, _error(code, message), {}
        if match := OPERATION_PATH.match(path):
            return self._operation(match.group(3))
        if match := LIST_PATH.match(path):
            if method == "GET" and match.group(2).lower() == self.resource_group.lower():
                return 200, {"value": [self._view(g) for g in self.groups.values()]}, {}
        match = GROUP_PATH.match(path)
        if not match or match.group(1) != self.subscription or match.group(2).lower() != self.resource_group.lower():
            self.unhandled.append((method, path))
            return 404, _error("NotFound", f"no route {method} {path}"), {}
        name, container = match.group(3), match.group(5)
        if container:
            return self._logs(name, container, query)
        return {"PUT": self._put, "GET": self._get, "DELETE": self._delete}.get(
            method, lambda n, b: (405, _error("MethodNotAllowed", method), {}))(name, body)

    def _put(self, name: str, body: Any) -> tuple[int, Any, dict]:
        problems = self.checker.problems(name, body)
        if problems:
            self.invalid_bodies.append((body, problems))
            return 400, _error("InvalidRequestContent", "; ".join(problems[:5])), {}
        refused = self._refused(name, body)
        if refused:
            status, code, message = refused
            self.refused_puts.append((name, code))
            return status, _error(code, message), {}
        with self.lock:
            changed = immutable_changes(self.groups[name].body, body) if name in self.groups else []
            if changed:
                status, code, message = IMMUTABLE_UPDATE
                self.refused_updates.append((name, changed))
                return status, _error(code, message.format(name=name)), {}
            previous = self.groups.pop(name, None)
            if previous and previous.script.on_deleted:
                previous.script.on_deleted()
            group = Group(name, copy.deepcopy(body), self.script_for(name, body))
            self.groups[name] = group
        operation = f"{name}~{uuid.uuid4().hex}"
        location = body["location"]
        headers = {"Azure-AsyncOperation": f"{self.base_url}subscriptions/{self.subscription}/providers/"
                   f"Microsoft.ContainerInstance/locations/{location}/operations/{operation}?api-version={API_VERSION}",
                   "Retry-After": "0"}
        return (200 if previous else 201), self._view(group, advance=False), headers

    def _refused(self, name: str, body: dict) -> tuple[int, str, str] | None:
        for identity in (body.get("identity") or {}).get("userAssignedIdentities") or {}:
            if identity.lower() not in self.resources:
                # ARM refuses a group naming a missing identity; the code is this fake's (the deployer reads the line)
                return 400, "InvalidIdentity", f"The user assigned identity '{identity}' does not exist."
        return self._over_quota(name, body) or pull_problem(name, body, self.docker_hub_limited)

    def _over_quota(self, name: str, body: dict) -> tuple[int, str, str] | None:
        if self.standard_cores_quota is None:
            return None
        usage = sum(_cores(group.body) for other, group in self.groups.items() if other != name)
        requested = _cores(body)
        if usage + requested <= self.standard_cores_quota:
            return None
        status, code, message = CORE_QUOTA
        return status, code, message.format(region=body["location"], limit=self.standard_cores_quota, usage=usage,
                                            requested=requested)

    def add_resource(self, resource_id: str, properties: dict, **extra: Any) -> dict:
        parts = resource_id.strip("/").split("/")
        provider, kind = parts[5], "/".join(parts[6::2])
        resource = {"id": resource_id, "name": resource_id.rsplit("/", 1)[-1], "type": f"{provider}/{kind}",
                    "location": "westeurope", "properties": properties, **extra}
        self.resources[resource_id.lower()] = resource
        return resource

    def _get(self, name: str, body: Any) -> tuple[int, Any, dict]:
        group = self.groups.get(name)
        if group is None:
            return 404, _error("ResourceNotFound", f"The Resource 'Microsoft.ContainerInstance/containerGroups/"
                                                   f"{name}' under resource group '{self.resource_group}' was not "
                                                   "found."), {}
        return 200, self._view(group), {}

    def _delete(self, name: str, body: Any) -> tuple[int, Any, dict]:
        with self.lock:
            group = self.groups.pop(name, None)
        if group is None:
            return 204, None, {}
        if group.script.on_deleted:
            group.script.on_deleted()
        return 200, self._view(group, advance=False), {}

    def _operation(self, operation: str) -> tuple[int, Any, dict]:
        group = self.groups.get(operation.split("~")[0])
        if group is None:
            return 200, {"status": "Canceled"}, {}
        step = self._current(group, advance=True)
        status = {"Succeeded": "Succeeded", "Failed": "Failed"}.get(step.provisioning, "InProgress")
        answer: dict[str, Any] = {"id": operation, "status": status}
        if status == "Failed":
            answer["error"] = group.script.error or {"code": "DeploymentFailed", "message": "the group failed"}
        return 200, answer, {"Retry-After": "0"}

    def _logs(self, name: str, container: str, query: dict) -> tuple[int, Any, dict]:
        group = self.groups.get(name)
        names = [c["name"] for c in (group.body["properties"]["containers"] +
                                     group.body["properties"].get("initContainers", []))] if group else []
        if container not in names:
            return 404, _error("ContainerGroupNotFound" if group is None else "ContainerNotFound",
                               f"container {container} not found in {name}"), {}
        lines = group.script.logs.get(container, "").splitlines(keepends=True)
        tail = int(query.get("tail", ["0"])[0] or 0)
        return 200, {"content": "".join(lines[-tail:] if tail else lines)}, {}

    # views

    def _current(self, group: Group, advance: bool) -> Step:
        with self.lock:
            step = group.script.steps[min(group.step, len(group.script.steps) - 1)]
            if advance:
                group.step += 1
            if step.state == "Running" and not group.started:
                group.started = True
                if group.script.on_running:
                    group.script.on_running(copy.deepcopy(group.body), self.clock)
        return step

    def _view(self, group: Group, advance: bool = True) -> dict:
        step = self._current(group, advance)
        view = _without_secrets(group.body)
        view.update(id=f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
                       f"Microsoft.ContainerInstance/containerGroups/{group.name}",
                    name=group.name, type="Microsoft.ContainerInstance/containerGroups")
        for identity_id, identity in ((view.get("identity") or {}).get("userAssignedIdentities") or {}).items():
            known = self.resources.get(identity_id.lower(), {}).get("properties", {})
            identity.update({k: known[k] for k in ("principalId", "clientId") if k in known})  # as ARM returns them
        props = view["properties"]
        props["provisioningState"] = step.provisioning
        props["instanceView"] = {"state": step.state, "events": step.events}
        for container in props["containers"] + props.get("initContainers", []):
            container["properties"]["instanceView"] = step.containers.get(
                container["name"], container_state("Waiting", detail="ContainerCreating"))
        ip = props.get("ipAddress")
        if ip:
            ip["ip"] = group.ip
            if ip.get("dnsNameLabel"):
                ip["fqdn"] = self.fqdn(ip["dnsNameLabel"], ip.get("autoGeneratedDomainNameLabelScope"),
                                       view["location"])
        return view

    def fqdn(self, label: str, scope: str | None, location: str) -> str:
        if not scope or scope == "Unsecure":
            return f"{label}.{location}.azurecontainer.io"
        seed = {"TenantReuse": [self.tenant], "SubscriptionReuse": [self.tenant, self.subscription],
                "ResourceGroupReuse": [self.tenant, self.subscription, self.resource_group.lower()]}.get(
                    scope, [uuid.uuid4().hex])
        digest = hashlib.sha256("/".join(seed + [label]).encode()).hexdigest()[:10]
        return f"{label}.{digest}.{location}.azurecontainer.io"


def _cores(body: dict) -> float:
    """The CPU a group requests: its containers' requests added up."""
    return sum(float(c["properties"]["resources"]["requests"]["cpu"]) for c in body["properties"]["containers"])


def _without_secrets(body: dict) -> dict:
    view = copy.deepcopy(body)
    props = view["properties"]
    for container in props["containers"] + props.get("initContainers", []):
        for env in container["properties"].get("environmentVariables", []):
            env.pop("secureValue", None)
    for volume in props.get("volumes", []):
        if "secret" in volume:
            volume["secret"] = {}
    return view


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


Respond = Callable[[str, str, dict, Any, Any], "tuple[int, Any, dict]"]


def json_handler(respond: Respond) -> type:
    """An HTTP/1.1 handler with JSON bodies: respond(method, path, query, headers, body) -> (status, answer,
    headers). Shared by the loopback fakes of Azure services."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer, headers = respond(self.command, parts.path, parse_qs(parts.query), self.headers, body)
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_POST = _serve

    return Handler


def https_server(handler: type, certificate: Path, private_key: Path) -> ThreadingHTTPServer:
    """A threading HTTPS server on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate), str(private_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
