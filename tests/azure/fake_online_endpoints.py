"""Managed online endpoints and deployments in the fake Azure ML (plugged in with `OnlineEndpoints(fake)`).

ARM routes of the 2024-10-01 spec (mfe.json: OnlineEndpoints_*, OnlineDeployments_*); every request is
validated against that spec, whatever api-version azure-ai-ml sends (2022-02-01-preview for endpoints,
2023-04-01-preview for deployments), and every answer too. The service's rules, each with its source:

* names: 3-32 characters, a letter first, letters, digits and hyphens, not ending with a hyphen [QUOTAS_DOC below;
  the SDK's own check: azure/ai/ml/entities/_endpoint/_endpoint_helpers.py validate_endpoint_or_deployment_name];
* an endpoint name is unique within the Azure region, across workspaces and subscriptions [same page:
  "Endpoint name ... must be unique within an Azure region"]: `region` is shared by the fakes of one region
  (QUOTAS_DOC: https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas
  #azure-machine-learning-online-endpoints-and-batch-endpoints);
* at most 20 deployments per endpoint [same page, "Number of deployments per endpoint"];
* traffic: whole percentages for existing deployments that sum to 100 (or all 0); mirror traffic at most
  50 and never to a deployment that takes live traffic [spec: OnlineEndpoint.traffic "need to sum to 100",
  mirrorTraffic "sum to utmost 50";
  https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints
  "Test the deployment with mirrored traffic"];
* a deployment that still has traffic cannot be deleted [how-to-safely-rollout-online-endpoints, "Remove the
  old deployment": set its traffic to 0 first];
* the instance type must be a managed online endpoint SKU, and the VM family's core quota must cover
  ceil(1.2 x instance count) instances: Azure ML reserves 20 % more for upgrades
  [https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#virtual-machine-quota,
  https://learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list];
  short of quota the deployment's operation fails with OutOfQuota
  [https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints#error-outofquota];
* a scoring script whose init() fails leaves the deployment Failed with ResourceNotReady
  [how-to-troubleshoot-online-endpoints#error-resourcenotready];
* long-running operations as recorded (recordings/README.md "Online endpoints"): PUT answers 201 (or 200)
  with `Azure-AsyncOperation` (mfeOperationsStatus/oeidp:<workspace id>:<op>) and
  `x-ms-async-operation-timeout: PT30M`, the body `provisioningState: Creating`, `kind: Managed`; the
  operation goes Updating -> Succeeded | Failed; DELETE answers 202 with a `Location` polled to 200.

Scoring is real HTTP on loopback: the endpoint's scoringUri is this fake's scoring front end, which checks the
key, routes by the `azureml-model-deployment` header or by the traffic weights (round robin over the
weights), copies mirrored requests, and forwards to each deployment's own process (fake_scoring_process.py
running the deployment's score.py as uploaded to Azurite).
"""
from __future__ import annotations

import copy
import json
import math
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aml_fake import Answer, _error, now, spec_for
from fake_scoring_process import JsonHandler

SPEC_VERSION = "2024-10-01"
NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
MAX_DEPLOYMENTS = 20
MAX_MIRROR = 50
UPGRADE_RESERVE = 1.2
# cores per instance type and VM family (reference-managed-online-endpoints-vm-sku-list)
SKUS = {"Standard_DS1_v2": (1, "standardDSv2Family"), "Standard_DS2_v2": (2, "standardDSv2Family"),
        "Standard_DS3_v2": (4, "standardDSv2Family"), "Standard_DS4_v2": (8, "standardDSv2Family"),
        "Standard_F2s_v2": (2, "standardFSv2Family"), "Standard_F4s_v2": (4, "standardFSv2Family"),
        "Standard_E2s_v3": (2, "standardESv3Family"), "Standard_E4s_v3": (4, "standardESv3Family"),
        "Standard_NC6s_v3": (6, "standardNCSv3Family")}
DEFAULT_QUOTA = {"standardDSv2Family": 32, "standardFSv2Family": 32, "standardESv3Family": 32,
                 "standardNCSv3Family": 0}
DEPLOYMENT_HEADER = "azureml-model-deployment"
IN_PROGRESS = "Updating"  # an operation's status while it runs, as recorded (recordings/README.md, online_endpoint_e2e)
ENDPOINTS = r"/onlineEndpoints"


class OnlineEndpoints:
    def __init__(self, fake: Any, region: dict[str, str] | None = None):
        self.fake = fake
        self.region = region if region is not None else {}  # endpoint name -> owning workspace, one Azure region
        self.quota = dict(DEFAULT_QUOTA)
        self.problems: list[str] = []  # request bodies the 2024-10-01 spec refused
        self.mirrored: dict[str, int] = {}
        # while set, the operations started stay in progress (a managed endpoint's take minutes) until it is cleared
        self.hold_operations = False
        self._operations: dict[str, dict] = {}
        self._processes: dict[str, tuple[subprocess.Popen, int, Path]] = {}
        self._round_robin: dict[str, int] = {}
        self._keys: dict[str, dict[str, str]] = {}
        self._tokens: dict[str, str] = {}
        self._scoring: ThreadingHTTPServer | None = None
        self.workspace_id = fake.resources[fake.prefix.lower()]["properties"]["workspaceId"]
        fake.extensions.append(self)

    def close(self) -> None:
        for process, _, folder in self._processes.values():
            process.kill()
            process.wait()
        self._processes.clear()
        if self._scoring is not None:
            self._scoring.shutdown()
            self._scoring.server_close()

    # --- ARM ----------------------------------------------------------------------------------------------

    def arm(self, method: str, path: str, query: dict, payload: Any, url: str) -> Answer | None:
        if "/mfeoperations" in path.lower() and "/oeidp:" in path.lower().replace("%3a", ":"):
            return self._poll(path, query)
        relative = path[len(self.fake.prefix):] if path.lower().startswith(self.fake.prefix.lower()) else ""
        if not relative.lower().startswith(ENDPOINTS.lower()):
            return None
        spec = spec_for(SPEC_VERSION)
        problems = spec.validate_request(method, path, {**query, "api-version": SPEC_VERSION}, payload)
        if problems:
            self.problems += problems
            self.fake.problems += problems
            return _error(400, "UserError", "; ".join(problems))
        answer = self._route(method, relative, query, payload, url)
        if answer.body is not None:
            self.fake.answer_problems += spec.validate_response(method, path, answer.status, answer.body)
        return answer

    def _route(self, method: str, relative: str, query: dict, payload: Any, url: str) -> Answer:
        parts = relative.strip("/").split("/")
        endpoint = parts[1] if len(parts) > 1 else None
        deployment = parts[3] if len(parts) > 3 else None
        if len(parts) == 1 and method == "GET":
            return self._list(self._endpoints())
        if len(parts) == 2:
            return {"PUT": lambda: self._put_endpoint(endpoint, payload, url),
                    "GET": lambda: self._get(self._endpoint_path(endpoint)),
                    "DELETE": lambda: self._delete_endpoint(endpoint, url)}.get(method, self._unsupported)()
        if len(parts) == 3 and parts[2] == "listKeys" and method == "POST":
            return self._list_keys(endpoint)
        if len(parts) == 3 and parts[2] == "token" and method == "POST":
            return self._token(endpoint)
        if len(parts) == 3 and parts[2] == "deployments" and method == "GET":
            if self._resource(self._endpoint_path(endpoint)) is None:
                return self._not_found(self._endpoint_path(endpoint))
            return self._list(self._deployments(endpoint))
        if len(parts) == 4:
            path = self._deployment_path(endpoint, deployment)
            return {"PUT": lambda: self._put_deployment(endpoint, deployment, payload, url),
                    "GET": lambda: self._get(path),
                    "DELETE": lambda: self._delete_deployment(endpoint, deployment, url),
                    }.get(method, self._unsupported)()
        return self._unsupported()

    @staticmethod
    def _unsupported() -> Answer:
        return _error(405, "MethodNotAllowed", "The fake does not implement this online endpoint operation.")

    # endpoints

    def _put_endpoint(self, name: str, payload: dict, url: str) -> Answer:
        problem = _name_problem("endpoint", name)
        if problem:
            return _error(400, "BadArgument", problem)
        path = self._endpoint_path(name)
        existing = self._resource(path)
        owner = self.region.get(name.lower())
        if existing is None and owner is not None and owner != self.workspace_id:
            return _error(409, "Conflict", f"Endpoint name {name} is already in use in region {self.fake.location}; "
                          "online endpoint names must be unique within an Azure region.")
        properties = payload["properties"]
        problem = self._traffic_problem(name, properties.get("traffic") or {}, properties.get("mirrorTraffic") or {})
        if problem:
            return _error(400, "BadArgument", problem)
        if existing is not None and existing["properties"].get("provisioningState") in ("Creating", "Updating"):
            return _error(409, "Conflict", f"Endpoint {name} is being provisioned; wait for the operation to end.")
        resource = copy.deepcopy(payload)
        resource.pop("properties", None)
        stored = {k: v for k, v in properties.items() if k != "keys"}
        stored.update({"provisioningState": "Creating" if existing is None else "Updating",
                       "scoringUri": f"{self._scoring_base()}/{name}/score",
                       "swaggerUri": f"{self._scoring_base()}/{name}/swagger.json",
                       "traffic": dict(properties.get("traffic") or {}),
                       "mirrorTraffic": dict(properties.get("mirrorTraffic") or {})})
        resource.update({"id": path, "name": name,
                         "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                         "kind": payload.get("kind") or "Managed", "properties": stored,
                         "systemData": existing["systemData"] if existing else self.fake._system_data()})
        if existing is None:
            self.region[name.lower()] = self.workspace_id
            keys = properties.get("keys") or {}
            self._keys[name.lower()] = {"primaryKey": keys.get("primaryKey") or secrets.token_urlsafe(32),
                                        "secondaryKey": keys.get("secondaryKey") or secrets.token_urlsafe(32)}
        self.fake.resources[path.lower()] = resource
        headers = self._operation(path, url, [IN_PROGRESS, "Succeeded"])
        return Answer(200 if existing else 201, _public(resource), headers)

    def _traffic_problem(self, endpoint: str, traffic: dict, mirror: dict) -> str | None:
        deployments = {d["name"] for d in self._deployments(endpoint)}
        for kind, shares in (("traffic", traffic), ("mirror traffic", mirror)):
            unknown = sorted(set(shares) - deployments)
            if unknown:
                return f"Invalid {kind}: deployment {', '.join(unknown)} does not exist in endpoint {endpoint}."
            if any(not 0 <= share <= 100 for share in shares.values()):
                return f"Invalid {kind}: each value must be between 0 and 100."
        if sum(traffic.values()) not in (0, 100):
            return f"Invalid traffic: the traffic values sum to {sum(traffic.values())}; they need to sum to 100."
        if sum(mirror.values()) > MAX_MIRROR:
            return f"Invalid mirror traffic: it sums to {sum(mirror.values())}; it can be at most {MAX_MIRROR}."
        both = sorted(name for name, share in mirror.items() if share > 0 and traffic.get(name, 0) > 0)
        if both:
            return f"Deployment {both[0]} cannot take live traffic and mirror traffic at the same time."
        return None

    def _delete_endpoint(self, name: str, url: str) -> Answer:
        path = self._endpoint_path(name)
        if self._resource(path) is None:
            return Answer(204)
        for deployment in self._deployments(name):
            self._stop(name, deployment["name"])
            del self.fake.resources[deployment["id"].lower()]
        del self.fake.resources[path.lower()]
        self.region.pop(name.lower(), None)
        self._keys.pop(name.lower(), None)
        return Answer(202, None, self._operation(path, url, [IN_PROGRESS, "Succeeded"], location=True))

    def _list_keys(self, name: str) -> Answer:
        endpoint = self._resource(self._endpoint_path(name))
        if endpoint is None:
            return self._not_found(self._endpoint_path(name))
        if endpoint["properties"]["authMode"].lower() != "key":
            return _error(400, "BadArgument", f"Endpoint {name} uses {endpoint['properties']['authMode']} "
                          "authentication; keys are only for Key auth mode.")
        return Answer(200, dict(self._keys[name.lower()]))

    def _token(self, name: str) -> Answer:
        endpoint = self._resource(self._endpoint_path(name))
        if endpoint is None:
            return self._not_found(self._endpoint_path(name))
        if endpoint["properties"]["authMode"].lower() != "amltoken":
            return _error(400, "BadArgument", f"Endpoint {name} does not use AMLToken authentication.")
        token = secrets.token_urlsafe(48)
        self._tokens[name.lower()] = token
        expiry = int(time.time()) + 3600
        return Answer(200, {"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": expiry,
                            "refreshAfterTimeUtc": expiry - 1800})

    # deployments

    def _put_deployment(self, endpoint: str, name: str, payload: dict, url: str) -> Answer:
        endpoint_path = self._endpoint_path(endpoint)
        if self._resource(endpoint_path) is None:
            return self._not_found(endpoint_path)
        problem = _name_problem("deployment", name)
        if problem:
            return _error(400, "BadArgument", problem)
        path = self._deployment_path(endpoint, name)
        existing = self._resource(path)
        if existing is None and len(self._deployments(endpoint)) >= MAX_DEPLOYMENTS:
            return _error(400, "BadArgument", f"Endpoint {endpoint} already has {MAX_DEPLOYMENTS} deployments, the "
                          "most an endpoint can have.")
        properties = payload["properties"]
        sku = properties.get("instanceType")
        if sku not in SKUS:
            return _error(400, "BadArgument", f"Instance type {sku} is not supported for managed online endpoints; "
                          "see https://learn.microsoft.com/azure/machine-learning/"
                          "reference-managed-online-endpoints-vm-sku-list")
        for reference in (properties.get("model"), properties.get("environmentId"),
                          (properties.get("codeConfiguration") or {}).get("codeId")):
            if reference and reference.startswith("/subscriptions/") and self._resource(reference) is None:
                return _error(400, "BadArgument", f"The asset {reference} does not exist.")
        resource = copy.deepcopy(payload)
        properties = resource["properties"]
        properties["provisioningState"] = "Creating" if existing is None else "Updating"
        _service_defaults(resource)
        resource.update({"id": path, "name": name,
                         "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                         "systemData": existing["systemData"] if existing else self.fake._system_data()})
        self.fake.resources[path.lower()] = resource
        headers = self._operation(path, url, [IN_PROGRESS, "Provision"])
        return Answer(200 if existing else 201, resource, headers)

    def _delete_deployment(self, endpoint: str, name: str, url: str) -> Answer:
        path = self._deployment_path(endpoint, name)
        if self._resource(path) is None:
            return self._not_found(path)
        properties = self._resource(self._endpoint_path(endpoint))["properties"]
        share = (properties.get("traffic") or {}).get(name, 0)
        mirrored = (properties.get("mirrorTraffic") or {}).get(name, 0)
        if share or mirrored:
            return _error(400, "BadArgument", f"Deployment {name} has {share or mirrored}% "
                          f"{'traffic' if share else 'mirror traffic'}; set its traffic to 0 before deleting it.")
        self._stop(endpoint, name)
        del self.fake.resources[path.lower()]
        properties.get("traffic", {}).pop(name, None)  # a 0 entry goes with the deployment
        properties.get("mirrorTraffic", {}).pop(name, None)
        return Answer(202, None, self._operation(path, url, [IN_PROGRESS, "Succeeded"], location=True))

    def _needed_cores(self, resource: dict) -> tuple[str, int]:
        properties = resource["properties"]
        cores, family = SKUS[properties["instanceType"]]
        count = (resource.get("sku") or {}).get("capacity") or \
            (properties.get("scaleSettings") or {}).get("instanceCount") or 1
        return family, math.ceil(count * UPGRADE_RESERVE) * cores

    def _usage(self, family: str, excluding: str) -> int:
        used = 0
        for key, resource in self.fake.resources.items():
            if "/onlineendpoints/" in key and "/deployments/" in key and key != excluding.lower() \
                    and resource["properties"].get("provisioningState") == "Succeeded":
                needed_family, cores = self._needed_cores(resource)
                used += cores if needed_family == family else 0
        return used

    def _provision(self, path: str) -> dict | None:
        """Bring the deployment up: quota, then its container (score.py's init()). None, or the error."""
        resource = self._resource(path)
        if resource is None:
            return {"code": "NotFound", "message": "The deployment was deleted."}
        family, needed = self._needed_cores(resource)
        used = self._usage(family, path)
        if used + needed > self.quota.get(family, 0):
            resource["properties"]["provisioningState"] = "Failed"
            return {"code": "OutOfQuota", "message": (
                f"Not enough quota available for {resource['properties']['instanceType']} in SubscriptionId "
                f"{self.fake.subscription}. Current usage/limit: {used}/{self.quota.get(family, 0)}. Additional "
                f"needed: {needed} Please see troubleshooting guide, available here: "
                "https://aka.ms/oe-tsg#error-outofquota")}
        segments = path.split("/")
        failure = self._start(segments[-3], segments[-1], resource)
        resource["properties"]["provisioningState"] = "Failed" if failure else "Succeeded"
        return {"code": "ResourceNotReady", "message": failure} if failure else None

    # long-running operations

    def _operation(self, path: str, url: str, states: list[str], location: bool = False) -> dict:
        operation = f"oeidp:{self.workspace_id}:{uuid.uuid4()}"
        self._operations[operation.lower()] = {"states": list(states), "path": path, "error": None,
                                               "held": self.hold_operations}
        version = dict(p.split("=", 1) for p in urlsplit(url).query.split("&") if "=" in p).get("api-version")
        base = (f"https://{self.fake.arm_host}/subscriptions/{self.fake.subscription}/providers/"
                f"Microsoft.MachineLearningServices/locations/{self.fake.location}")
        if location:
            return {"Location": f"{base}/mfeOperationsResults/{operation}?api-version={version}",
                    "x-ms-async-operation-timeout": "PT30M"}
        return {"Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{operation}?api-version={version}",
                "Location": f"{base}/mfeOperationsResults/{operation}?api-version={version}",
                "x-ms-async-operation-timeout": "PT30M"}

    def _poll(self, path: str, query: dict) -> Answer:
        operation_id = path.rsplit("/", 1)[-1].replace("%3A", ":").replace("%3a", ":").lower()
        operation = self._operations.get(operation_id)
        if operation is None:
            return _error(404, "NotFound", "The operation was not found.")
        states = operation["states"]
        if operation["held"] and self.hold_operations:
            state = IN_PROGRESS
        else:
            state = states.pop(0) if len(states) > 1 else states[0]
        if state == "Provision":
            operation["error"] = self._provision(operation["path"])
            state = states[0] = "Failed" if operation["error"] else "Succeeded"
        elif state == "Succeeded":
            resource = self._resource(operation["path"])
            if resource is not None and resource["properties"].get("provisioningState") in ("Creating", "Updating"):
                resource["properties"]["provisioningState"] = "Succeeded"
        if "mfeoperationsresults" in path.lower():
            again = {"Location": f"https://{self.fake.arm_host}{path}?{urlencode(query)}"}
            return Answer(202, None, again) if state == IN_PROGRESS else Answer(200)
        body = {"id": path, "name": operation_id, "status": state, "startTime": now(),
                "endTime": "0001-01-01T00:00:00+00:00" if state == IN_PROGRESS else now(),
                "percentComplete": 0.0 if state == IN_PROGRESS else 1.0}
        if state == "Failed":
            body["error"] = operation["error"]
        return Answer(200, body)

    # --- resources ------------------------------------------------------------------------------------

    def _endpoint_path(self, name: str) -> str:
        return f"{self.fake.prefix}/onlineEndpoints/{name}"

    def _deployment_path(self, endpoint: str, name: str) -> str:
        return f"{self._endpoint_path(endpoint)}/deployments/{name}"

    def _resource(self, path: str) -> dict | None:
        return self.fake.resources.get(path.lower())

    def _endpoints(self) -> list[dict]:
        prefix = f"{self.fake.prefix}/onlineEndpoints/".lower()
        return [r for k, r in self.fake.resources.items() if k.startswith(prefix) and "/" not in k[len(prefix):]]

    def _deployments(self, endpoint: str) -> list[dict]:
        prefix = f"{self._endpoint_path(endpoint)}/deployments/".lower()
        return [r for k, r in self.fake.resources.items() if k.startswith(prefix) and "/" not in k[len(prefix):]]

    def _get(self, path: str) -> Answer:
        resource = self._resource(path)
        return Answer(200, _public(resource)) if resource is not None else self._not_found(path)

    def _list(self, items: list[dict]) -> Answer:
        return Answer(200, {"value": [_public(item) for item in items]})

    @staticmethod
    def _not_found(path: str) -> Answer:
        kind = "Deployment" if "/deployments/" in path else "Endpoint"
        return _error(404, "UserError", f"{kind} {path.rsplit('/', 1)[-1]} not found.")

    # --- the deployments' containers and the scoring front end -------------------------------------------

    def _start(self, endpoint: str, name: str, resource: dict) -> str | None:
        """Run the deployment's score.py (downloaded from the workspace's storage) in its own process."""
        self._stop(endpoint, name)
        folder = Path(tempfile.mkdtemp(prefix="fake-deployment-"))
        properties = resource["properties"]
        code = self._resource(properties["codeConfiguration"]["codeId"])
        self._download(code["properties"]["codeUri"], folder / "app")
        (folder / "model").mkdir()
        port = _free_port()
        log = open(folder / "container.log", "wb")
        script = Path(__file__).with_name("fake_scoring_process.py")
        process = subprocess.Popen([sys.executable, str(script), str(port), str(folder / "app"),
                                    properties["codeConfiguration"]["scoringScript"], str(folder / "model")],
                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.close()
                tail = (folder / "container.log").read_text(errors="replace").strip().splitlines()[-1:]
                return f"User container has crashed or terminated: {' '.join(tail)}"
            if _listening(port):
                self._processes[f"{endpoint}/{name}".lower()] = (process, port, folder)
                return None
            time.sleep(0.05)
        process.kill()
        return "User container did not become ready in time."

    def _download(self, uri: str, destination: Path) -> None:
        parts = urlsplit(uri)
        container, _, prefix = parts.path.lstrip("/").partition("/")
        client = self.fake.storage.service.get_container_client(container)
        for blob in client.list_blobs(name_starts_with=prefix):
            relative = blob.name[len(prefix):].lstrip("/")
            if not relative:
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.download_blob(blob.name).readall())

    def _stop(self, endpoint: str, name: str) -> None:
        entry = self._processes.pop(f"{endpoint}/{name}".lower(), None)
        if entry is not None:
            entry[0].kill()
            entry[0].wait()

    def _scoring_base(self) -> str:
        if self._scoring is None:
            owner = self

            class Handler(_ScoringHandler):
                endpoints = owner
            self._scoring = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._scoring.daemon_threads = True
            threading.Thread(target=self._scoring.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._scoring.server_address[1]}"

    def route(self, endpoint_name: str, headers: dict) -> tuple[int, str | int]:
        """(status, message) or (0, port of the deployment that serves the request)."""
        endpoint = self._resource(self._endpoint_path(endpoint_name))
        if endpoint is None:
            return 404, "Endpoint not found."
        properties = endpoint["properties"]
        if not self._authorized(endpoint_name, properties["authMode"], headers.get("authorization", "")):
            return 401, "Unauthorized: the key or token is missing or wrong."
        wanted = headers.get(DEPLOYMENT_HEADER)
        if wanted:
            entry = self._processes.get(f"{endpoint_name}/{wanted}".lower())
            return (0, entry[1]) if entry else (404, f"Deployment {wanted} not found or not ready.")
        weights = [(name, share) for name, share in sorted((properties.get("traffic") or {}).items()) if share > 0]
        if not weights:
            return 404, ("No valid deployments to route to. Please check that the endpoint has at least one "
                         "deployment with positive weight values or use a deployment specific header to route.")
        slot = self._round_robin.get(endpoint_name, 0) % 100
        self._round_robin[endpoint_name] = slot + 1
        chosen = next(name for index, (name, share) in enumerate(weights)
                      if slot < sum(s for _, s in weights[: index + 1]))
        for name, share in (properties.get("mirrorTraffic") or {}).items():
            if share and slot % 100 < share:
                self.mirrored[name] = self.mirrored.get(name, 0) + 1
        entry = self._processes.get(f"{endpoint_name}/{chosen}".lower())
        return (0, entry[1]) if entry else (502, f"Deployment {chosen} is not running.")

    def _authorized(self, endpoint: str, mode: str, header: str) -> bool:
        if not header.lower().startswith("bearer "):
            return False
        value = header[7:]
        if mode.lower() == "key":
            return value in self._keys.get(endpoint.lower(), {}).values()
        if mode.lower() == "amltoken":
            return value == self._tokens.get(endpoint.lower())
        return value.count(".") == 2  # AADToken: an Entra ID JWT (the test credential mints unsigned ones)


class _ScoringHandler(JsonHandler):
    endpoints: OnlineEndpoints

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = re.fullmatch(r"/([^/]+)/score", self.path)
        if match is None:
            return self._answer(404, b'{"message": "not found"}')
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, target = self.endpoints.route(match.group(1), headers)
        if status:
            return self._answer(status, json.dumps({"message": target}).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{target}/score", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self._answer(response.status, response.read())
        except urllib.error.HTTPError as error:
            self._answer(error.code, error.read())
        except OSError as error:
            self._answer(502, json.dumps({"message": f"upstream: {error}"}).encode())


def _service_defaults(resource: dict) -> None:
    """What the service fills in when a deployment leaves it out (the SDK reads them back)."""
    properties = resource["properties"]
    probe = {"failureThreshold": 30, "successThreshold": 1, "timeout": "PT2S", "period": "PT10S",
             "initialDelay": "PT10S"}
    properties.setdefault("scaleSettings", {"scaleType": "Default"})
    properties.setdefault("requestSettings", {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1})
    properties.setdefault("livenessProbe", dict(probe))
    properties.setdefault("readinessProbe", dict(probe))
    properties.setdefault("appInsightsEnabled", False)
    properties.setdefault("egressPublicNetworkAccess", "Enabled")
    resource.setdefault("sku", {"name": "Default", "tier": "Standard", "capacity": 1})


def _public(resource: dict) -> dict:
    return copy.deepcopy(resource)


def _name_problem(kind: str, name: str) -> str | None:
    if NAME.match(name):
        return None
    return (f"The name for {'a deployment' if kind == 'deployment' else 'an endpoint'} {name!r} is not valid: it must "
            "be 3-32 characters, start with a letter and consist of letters, digits and '-', not ending with '-'.")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
