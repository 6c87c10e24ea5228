"""A loopback fake of Azure ML: the Resource Manager (ARM) API of Microsoft.MachineLearningServices and the
workspace data plane (discovery, run history, dataset URIs) that azure-ai-ml calls.

It sits at the network edge: `FakeAzureML.transport()` is an azure-core `RequestsTransport` whose
`requests` session hands each request for Azure ML's hosts to this fake instead of a socket (other hosts,
the storage accounts, go to the network: Azurite), so every request went through the SDK's whole pipeline
first (authentication, headers, retry policy, LRO pollers, paging).

What it does like the service:
* ARM resources under the workspace live in memory: PUT answers 201 (new) or 200, GET answers 404 with
  ARM's error body when absent, lists are paged `page_size` at a time with a `nextLink` that carries an
  opaque continuation token in the spec's `$skip` (a token it did not issue is refused); asset versions
  create their container (`latestVersion`, `nextVersion`) and are immutable once created; a container PUT
  replaces only what the spec lets a client set (tags, description, properties, isArchived); the
  workspaces of the resource group are listed (`add_workspace` adds more); `serve_http()` answers the ARM
  side over real HTTP on loopback too;
* batch endpoints and deployments are long-running operations (201/202 with `Azure-AsyncOperation`
  and `Location`, an operation status resource that goes InProgress -> Succeeded);
* a pipeline job runs by itself: every `polls_per_phase` GETs of it move it one phase along a plan
  (NotStarted -> Queued -> Provisioning -> Running -> Completed by default, or a failing or never-ending
  plan), its steps are child runs in run history, and when it completes its outputs are written to the
  workspace's blob container in Azurite (the real storage emulator) where `jobs.download` finds them;
  `POST .../cancel` answers 202 with a Location and the job goes CancelRequested -> Canceled;
* `fail_next(...)` scripts faults: a status with headers (429 + Retry-After, 500, 403, 404...) or a
  connection reset, for the next n matching requests.

The service's rules it enforces (each cites its source where it is enforced; docs/azure-backend.md lists them):
* the workspace starts as environment_setup/azuredeploy.json deploys it (`template_seed`): its compute clusters
  with their managed identities, and its role assignments. `GET computes/<name>` of another name is 404 with an
  empty body (recorded). A job's compute must be an ARM id of a compute (format checked at submit, existence
  when it runs);
* a job input read from an identity-based datastore (no stored credential) is read with the job's identity,
  else the compute's managed identity, which must hold a blob data role on the storage account, or the step
  fails at the mount with ScriptExecution.StreamAccess.Authentication (the template is tested by the run);
* run history reports the steps as child runs, their outputs as the service does (type `UriFolder`, written
  under `azureml/<child run id>/<output>/`), a child's ARM job without properties, and its logs under
  `ExperimentRun/dcid.<child run id>/` in the artifact store;
* a model version from `azureml://jobs/<job>/outputs/<output>` is refused when no blob is there and stored as
  the datastore path the output resolved to (what `models.download` reads back);
* batch endpoint names follow the naming rule and are unique per region (`region_endpoint_names`: the names
  other workspaces of the region hold); a batch deployment's default compute must exist.

What it checks: every ARM request against the official REST spec (tests/azure/swagger.py, the api-version
folder closest to the one the client sent: `spec_for`): its route, path parameters (name patterns),
query parameters and body (allOf merged, discriminators resolved, unknown/read-only properties refused).
A request that fails is answered 400 like the service would and kept in `problems`. The fake's own answers
are checked against the spec's response schemas too (`answer_problems`). Data-plane calls have no spec
in shared/specs and are shaped after azure-ai-ml's own models; they are not validated.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from support import SPECS
from swagger import Spec
from template_seed import Deployment, deploy

ARM_HOST = "management.azure.com"  # the public cloud's; `arm_host` changes it (sovereign clouds)
SPEC_ROOT = (SPECS / "azure" / "rest-api-specs" / "specification" / "machinelearningservices" / "resource-manager"
             / "Microsoft.MachineLearningServices")
SPEC_FOLDERS = {"2024-01-01-preview": SPEC_ROOT / "preview" / "2024-01-01-preview",
                "2024-10-01": SPEC_ROOT / "stable" / "2024-10-01"}
_SPECS: dict[str, Spec] = {}
_SPECS_LOCK = threading.Lock()
ASSETS = ("codes", "components", "environments", "models", "data")
PAGE_PARAMETER = "$skip"  # the spec's PaginationParameter of every Azure ML list (see `_page`)
# What azure-ai-ml 1.35.2 sends outside the spec and the service accepts (it stores the value as a string)
TOLERATED = [
    (r"CodeVersions_CreateOrUpdate .*body\.properties\.properties\.hash_version must be of type string, got int",
     "code versions: the content-hash version is sent as a JSON number in the string-valued properties map"),
]
PLANS = {
    "succeed": [("NotStarted", {}), ("Queued", {}), ("Provisioning", {0: "Queued"}), ("Running", {0: "Running"}),
                ("Running", {0: "Completed", 1: "Running"}), ("Completed", {1: "Completed"})],
    "fail": [("NotStarted", {}), ("Queued", {}), ("Running", {0: "Running"}), ("Failed", {0: "Failed", 1: "Canceled"})],
    "hang": [("NotStarted", {}), ("Queued", {}), ("Running", {0: "Running"})],
}
# Built-in roles that let an identity read blobs (https://learn.microsoft.com/azure/role-based-access-control/
# built-in-roles/storage): Storage Blob Data Reader, Contributor, Owner
BLOB_READ_ROLES = {"2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
                   "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
                   "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner"}
# The spec's ComputeNameParameter (machineLearningServices.json, 2024-01-01-preview)
COMPUTE_NAME = r"[a-zA-Z](?![a-zA-Z0-9-]*-\d+$)[a-zA-Z0-9\-]{2,23}"
# Batch (and online) endpoint names: begin with a letter, 3-32 letters, digits and hyphens
# (https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Endpoint name")
ENDPOINT_NAME = r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]"


def spec_for(api_version: str) -> Spec:
    """The spec folder closest in date to `api_version` (ties: the same preview/stable channel)."""
    def distance(folder: str) -> tuple[int, int]:
        days = abs((_date(folder) - _date(api_version)).days)
        return days, 0 if folder.endswith("-preview") == api_version.endswith("-preview") else 1
    chosen = min(SPEC_FOLDERS, key=distance)
    with _SPECS_LOCK:
        if chosen not in _SPECS:
            _SPECS[chosen] = Spec(SPEC_FOLDERS[chosen])
    return _SPECS[chosen]


def _date(version: str) -> datetime:
    return datetime.strptime(version[:10], "%Y-%m-%d")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)
    unchecked: bool = False  # an answer the service gives outside its own spec (recorded): not validated


@dataclass
class Fault:
    method: str
    path_contains: str
    times: int
    status: int = 500
    headers: dict = field(default_factory=dict)
    code: str = "InternalServerError"
    message: str = "An internal server error occurred."
    reset: bool = False


@dataclass
class Recorded:
    method: str
    host: str
    path: str
    query: dict
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    caller: str = ""  # the object id (oid) in the bearer token

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")


class FakeAzureML:
    def __init__(self, *, subscription: str, resource_group: str, workspace: str, storage_account: str,
                 storage_key: str, storage_suffix: str, location: str = "westeurope",
                 storage: Any = None, container: str = "azureml-blobstore-0001", page_size: int = 2,
                 template: Path | dict | None = None, pipeline_principal: str | None = None):
        self.subscription, self.resource_group, self.workspace = subscription, resource_group, workspace
        self.location, self.storage_account, self.storage_key = location, storage_account, storage_key
        self.storage_suffix = storage_suffix
        self.storage = storage  # create_container(name), write(container, path, bytes): the real blob service
        self.page_size = page_size
        self.container = container
        self.prefix = (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
                       f"Microsoft.MachineLearningServices/workspaces/{workspace}")
        self.data_host = f"{location}.api.azureml.ms"
        self.arm_host = ARM_HOST
        self.arm_aliases: set[str] = set()  # host:port also answered as ARM (`serve_http`: real HTTP on loopback)
        self.resources: dict[str, dict] = {}
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.answer_problems: list[str] = []
        self.unhandled: list[str] = []
        self.deviations: set[str] = set()
        self.faults: list[Fault] = []
        self.job_plan = "succeed"
        self.polls_per_phase = 2  # azure-ai-ml's jobs.list(parent_job_name=...) GETs the parent job too
        self.job_outputs: dict[str, dict[str, bytes]] = {}
        self.denied: dict[str, str] = {}  # path fragment -> action name: answered 403 AuthorizationFailed
        self.extensions: list[Any] = []  # more ARM routes: `arm(...)` answers or returns None (fake_online_endpoints)
        self._caller = ""  # the object id of who sent the request being answered
        self.artifact_container = f"{container}-artifacts"  # workspaceartifactstore's container (logs)
        self.step_logs: dict[str, str] = {}  # step -> what its user_logs/std_log.txt says (scripted)
        self.region_endpoint_names: set[str] = set()  # batch endpoint names other workspaces of the region hold
        self.deployment: Deployment = Deployment([], [])
        self._template = (template, pipeline_principal)
        self._jobs: dict[str, dict] = {}
        self._operations: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._seed()

    # --- wiring -----------------------------------------------------------------------------------------

    def transport(self):
        """An azure-core transport that answers from this fake (no socket, no TLS)."""
        from azure.core.pipeline.transport import RequestsTransport

        session = requests.Session()
        adapter = _Adapter(self)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return RequestsTransport(session=session, session_owner=False)

    @contextlib.contextmanager
    def serve_http(self) -> Iterator[str]:
        """The ARM side over real HTTP on 127.0.0.1 (for callers that are not azure-core clients: the Azure DevOps
        endpoint proxy of tests/fakes/endpoint_proxy.py); yields its URL with a trailing slash, as an Azure
        Resource Manager service connection's `endpoint.url`."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer()

            def do_PUT(self):
                self._answer()

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                answer = fake.handle(self.command, f"http://{self.headers['Host']}{self.path}", dict(self.headers),
                                     body)
                content = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json; charset=utf-8", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        netloc = f"127.0.0.1:{server.server_address[1]}"
        self.arm_aliases.add(netloc)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://{netloc}/"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self.arm_aliases.discard(netloc)

    def fail_next(self, method: str, path_contains: str, status: int = 500, times: int = 1,
                  headers: dict | None = None, code: str | None = None, message: str | None = None,
                  reset: bool = False) -> None:
        defaults = {429: ("TooManyRequests", "The request is being throttled."),
                    403: ("AuthorizationFailed", "Forbidden"), 404: ("ResourceNotFound", "Not found")}
        default_code, default_message = defaults.get(status, ("InternalServerError", "An internal error occurred."))
        self.faults.append(Fault(method, path_contains, times, status, headers or {}, code or default_code,
                                 message or default_message, reset))

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # --- the seed: a workspace with its default datastore ----------------------------------------------

    def _seed(self) -> None:
        workspace_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.prefix))
        group = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers"
        storage_id = f"{group}/Microsoft.Storage/storageAccounts/{self.storage_account}"
        # the linked key vault and registry, as in the recorded workspace answers (spelling of Keyvault included)
        self.key_vault_id = f"{group}/Microsoft.Keyvault/vaults/kv-{self.workspace}"
        self.registry_id = f"{group}/Microsoft.ContainerRegistry/registries/acr{self.workspace.replace('-', '')}"
        self.resources[self.prefix.lower()] = self._workspace_resource(self.workspace, workspace_id, storage_id)
        self._store_datastore("workspaceblobstore", {
            "datastoreType": "AzureBlob", "accountName": self.storage_account, "containerName": self.container,
            "endpoint": self.storage_suffix, "protocol": "https", "isDefault": True,
            "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}},
            "serviceDataAccessAuthIdentity": "None",
            "description": "the workspace's default blob store", "tags": {}, "properties": {}})
        self._store_datastore("workspaceartifactstore", {
            "datastoreType": "AzureBlob", "accountName": self.storage_account, "containerName": self.artifact_container,
            "endpoint": self.storage_suffix, "protocol": "https", "isDefault": False,
            "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}},
            "serviceDataAccessAuthIdentity": "None", "description": "run logs", "tags": {}, "properties": {}})
        self.deploy_template(*self._template)

    def _workspace_resource(self, name: str, workspace_id: str, storage_id: str) -> dict:
        path = f"{self.prefix.rsplit('/', 1)[0]}/{name}"
        return {
            "id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": self.location, "kind": "Default", "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
            "properties": {"workspaceId": workspace_id, "friendlyName": name,
                           "discoveryUrl": f"https://{self.data_host}/discovery", "storageAccount": storage_id,
                           "keyVault": self.key_vault_id, "containerRegistry": self.registry_id,
                           "provisioningState": "Succeeded", "hbiWorkspace": False,
                           "mlFlowTrackingUri": f"azureml://{self.data_host}/mlflow/v1.0{path}",
                           "publicNetworkAccess": "Enabled", "v1LegacyMode": False},
            "systemData": self._system_data(),
        }

    def add_workspace(self, name: str) -> None:
        """Another workspace in the resource group, as ARM lists it (its contents are not served)."""
        workspace = self.resources[self.prefix.lower()]
        resource = self._workspace_resource(name, str(uuid.uuid4()), workspace["properties"]["storageAccount"])
        self.resources[resource["id"].lower()] = resource

    def deploy_template(self, template: Path | dict | None = None, pipeline_principal: str | None = None) -> None:
        """The workspace's computes and the role assignments as this ARM template (default: the project's
        environment_setup/azuredeploy.json) deploys them; deploying again replaces both."""
        self.deployment = deploy(template, subscription=self.subscription, resource_group=self.resource_group,
                                 workspace=self.workspace, storage_account=self.storage_account,
                                 pipeline_principal=pipeline_principal)
        for key in [key for key in self.resources if key.startswith(f"{self.prefix}/computes/".lower())]:
            del self.resources[key]
        for compute in self.deployment.computes:
            self._store_compute(compute)

    def _store_compute(self, compute) -> None:
        path = f"{self.prefix}/computes/{compute.name}"
        resource = {"id": path, "name": compute.name, "type": "Microsoft.MachineLearningServices/workspaces/computes",
                    "location": self.location, "systemData": self._system_data(),
                    "properties": {"computeType": compute.properties.get("computeType", "AmlCompute"),
                                   "computeLocation": self.location, "provisioningState": "Succeeded",
                                   "description": compute.properties.get("description"),
                                   "properties": compute.properties.get("properties") or {}}}
        if compute.identity:
            resource["identity"] = dict(compute.identity)
        self.resources[path.lower()] = resource

    def _store_datastore(self, name: str, properties: dict) -> dict:
        path = f"{self.prefix}/datastores/{name}"
        resource = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                    "properties": properties, "systemData": self._system_data()}
        self.resources[path.lower()] = resource
        return resource

    @staticmethod
    def _system_data() -> dict:
        stamp = now()
        return {"createdAt": stamp, "createdBy": "tester@contoso.com", "createdByType": "User",
                "lastModifiedAt": stamp, "lastModifiedBy": "tester@contoso.com", "lastModifiedByType": "User"}

    # --- dispatch ---------------------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: dict, body: bytes | None) -> Answer:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body
        record = Recorded(method, parts.hostname or "", parts.path, query, payload,
                          caller=_token_object_id(headers.get("Authorization", "")))
        with self._lock:
            self.requests.append(record)
            self._caller = record.caller
            fault = self._take_fault(method, parts.path)
            if fault is not None and fault.reset:
                record.status = -1
                raise requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
                    "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))
            anonymous = parts.hostname == self.data_host and parts.path == "/discovery"  # public, like the service
            if not anonymous and not headers.get("Authorization", "").startswith("Bearer "):
                answer = _error(401, "AuthenticationFailed", "Authentication failed: no bearer token.")
            elif fault is not None:
                answer = _error(fault.status, fault.code, fault.message, fault.headers)
            elif parts.hostname == self.arm_host or parts.netloc in self.arm_aliases:
                answer = self._arm(method, parts.path, query, payload, url)
            elif parts.hostname == self.data_host:
                answer = self._data_plane(method, parts.path, query, payload)
            else:
                answer = self._unhandled(method, url)
            record.status = answer.status
            return answer

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.path_contains.lower() in path.lower():
                fault.times -= 1
                return fault
        return None

    def _unhandled(self, method: str, url: str) -> Answer:
        self.unhandled.append(f"{method} {url}")
        return _error(404, "ResourceNotFound", f"The fake does not know {method} {urlsplit(url).path}")

    # --- ARM ----------------------------------------------------------------------------------------------

    def _arm(self, method: str, path: str, query: dict, payload: Any, url: str) -> Answer:
        api_version = query.get("api-version")
        if not api_version:
            return _error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) "
                          "is required for all requests.")
        for extension in self.extensions:
            answer = extension.arm(method, path, query, payload, url)
            if answer is not None:
                return answer
        spec = spec_for(api_version)
        if spec.operation(method, path) is None and "/mfeOperations" not in path:
            return self._unhandled(method, url)
        problems = spec.validate_request(method, path, query, payload) if "/mfeOperations" not in path else []
        problems = self._tolerate(problems)
        if problems:
            self.problems += problems
            return _error(400, "UserError", "; ".join(problems))
        denied = next((action for fragment, action in self.denied.items() if fragment.lower() in path.lower()), None)
        if denied:
            return _error(403, "AuthorizationFailed", _authorization_failed(denied, path))
        answer = self._route(method, path, query, payload, url)
        if answer.body is not None and "/mfeOperations" not in path and not answer.unchecked:
            self.answer_problems += spec.validate_response(method, path, answer.status, answer.body)
        return answer

    def _tolerate(self, problems: list[str]) -> list[str]:
        """Keep the known, harmless deviations of azure-ai-ml from the spec aside (`deviations`)."""
        remaining = []
        for problem in problems:
            if any(re.search(pattern, problem) for pattern, _ in TOLERATED):
                self.deviations.add(problem)
            else:
                remaining.append(problem)
        return remaining

    def _route(self, method: str, path: str, query: dict, payload: Any, url: str) -> Answer:
        lower = path.lower()
        if "/mfeoperations" in lower:
            return self._operation_status(path)
        if lower == self.prefix.lower().rsplit("/", 1)[0] and method == "GET":
            return self._page(self._workspaces(), query, url)
        if not lower.startswith(self.prefix.lower()):
            return _error(404, "ResourceGroupNotFound", f"Resource group '{self.resource_group}' could not be found.")
        relative = path[len(self.prefix):]
        if re.fullmatch(r"/jobs/[^/]+", relative) and method == "PUT":
            return self._check_compute_ids(payload) or self._create_job(path, payload)
        if re.fullmatch(r"/computes/[^/]+", relative) and method == "GET" and lower not in self.resources:
            # recorded (pipeline_job_validation_remote[non_existent_compute.yml]): 404 with no body at all
            return Answer(404, None)
        if re.fullmatch(r"/jobs/[^/]+", relative) and method == "GET":
            return self._get_job(path)
        if re.fullmatch(r"/jobs/[^/]+/cancel", relative, re.I):
            return self._cancel_job(path[: -len("/cancel")], url)
        if re.fullmatch(r"/(codes|data|models)/[^/]+/versions/[^/]+/startPendingUpload", relative, re.I):
            return self._pending_upload(payload)
        if re.fullmatch(r"/datastores/[^/]+/listSecrets", relative, re.I):
            return Answer(200, {"secretsType": "AccountKey", "key": self.storage_key})
        if re.fullmatch(r"/batchEndpoints/[^/]+(/deployments/[^/]+)?", relative) and method == "PUT":
            return self._check_batch_names(path) or self._check_deployment_compute(payload) or \
                self._create_long_running(path, payload, url)
        if re.fullmatch(r"/models/[^/]+/versions/[^/]+", relative) and method == "PUT":
            return self._put_model(path, payload)
        if re.fullmatch(r"/(codes|components|environments|models|data)/[^/]+", relative) and method == "PUT":
            return self._put_container(path, payload)
        if method == "PUT":
            return self._put(path, payload)
        if method == "GET":
            return self._get_or_list(path, query, url)
        return self._unhandled(method, url)

    def _put(self, path: str, payload: dict) -> Answer:
        existing = self.resources.get(path.lower())
        match = re.search(r"/(codes|components|environments|models|data)/([^/]+)/versions/([^/]+)$", path)
        if match and existing is not None and _content(existing) != _content(payload):
            if match.group(1) == "codes" and _content(existing, "codeUri") == _content(payload, "codeUri"):
                pass
            elif not _same_asset(existing, payload):
                return _error(409, "UserError", f"{match.group(1)[:-1].capitalize()} {match.group(2)} version "
                              f"{match.group(3)} already exists with different content; versions are immutable.")
        resource = self._materialize(path, payload, existing)
        self.resources[path.lower()] = resource
        if match:
            self._touch_container(path.rsplit("/versions/", 1)[0], match.group(3))
        return Answer(200 if existing else 201, resource)

    def _materialize(self, path: str, payload: dict, existing: dict | None) -> dict:
        resource = copy.deepcopy(payload)
        kind = "/".join(segment for index, segment in enumerate(path[len(self.prefix):].strip("/").split("/"))
                        if index % 2 == 0)
        resource.update({"id": path, "name": path.rsplit("/", 1)[-1],
                         "type": f"Microsoft.MachineLearningServices/workspaces/{kind}",
                         "systemData": existing["systemData"] if existing else self._system_data()})
        properties = resource.setdefault("properties", {})
        if isinstance(properties.get("properties"), dict):  # a map of strings: the service keeps strings
            properties["properties"] = {k: v if v is None else str(v) for k, v in properties["properties"].items()}
        if re.search(r"/(codes|components|environments|models|data)/[^/]+/versions/", path):
            properties.setdefault("isArchived", False)
            properties.setdefault("isAnonymous", False)
            properties["provisioningState"] = "Succeeded"
        if "/models/" in path:
            properties["flavors"] = properties.get("flavors") or {}  # the service answers {} for custom models
        if "/environments/" in path:
            properties.setdefault("environmentType", "UserCreated")
            properties.setdefault("osType", "Linux")
        return resource

    def _workspaces(self) -> list[dict]:
        folder = self.prefix.lower().rsplit("/", 1)[0] + "/"
        found = [resource for key, resource in self.resources.items()
                 if key.startswith(folder) and "/" not in key[len(folder):]]
        return sorted(found, key=lambda r: r["name"])

    def _put_container(self, path: str, payload: dict) -> Answer:
        """ComponentContainers_CreateOrUpdate and its siblings (mfe.json): the answer is 200, or 201 for a new
        container. A PUT replaces what the client may set, `description`, `tags` ("Tags can be added, removed,
        and updated"), `properties` and `isArchived` (x-ms-mutability create/update); the server's own
        `latestVersion`, `nextVersion` and `provisioningState` are read-only and kept (sending them is refused
        by the request check); `systemData.createdAt` stays."""
        existing = self.resources.get(path.lower())
        mutable = ("description", "tags", "properties", "isArchived")
        sent = (payload or {}).get("properties") or {}
        kept = {key: value for key, value in ((existing or {}).get("properties") or {}).items() if key not in mutable}
        resource = self._materialize(path, payload, existing)
        resource["properties"] = {"isArchived": False, "provisioningState": "Succeeded", **kept,
                                  **{key: sent[key] for key in mutable if key in sent}}
        if existing is not None:
            resource["systemData"] = {**existing["systemData"], "lastModifiedAt": now()}
        self.resources[path.lower()] = resource
        return Answer(200 if existing else 201, resource)

    def _touch_container(self, container_path: str, version: str) -> None:
        container = self.resources.get(container_path.lower())
        if container is None:
            container = {"id": container_path, "name": container_path.rsplit("/", 1)[-1],
                         "type": "Microsoft.MachineLearningServices/workspaces/" + container_path.split("/")[-2],
                         "properties": {"isArchived": False, "provisioningState": "Succeeded"},
                         "systemData": self._system_data()}
            self.resources[container_path.lower()] = container
        properties = container["properties"]
        properties["latestVersion"] = version
        numbers = [int(v) for v in self._versions(container_path) if v.isdigit()]
        properties["nextVersion"] = str(max(numbers, default=0) + 1)

    def _versions(self, container_path: str) -> list[str]:
        prefix = container_path.lower() + "/versions/"
        return [key[len(prefix):] for key in self.resources if key.startswith(prefix) and "/" not in key[len(prefix):]]

    def _get_or_list(self, path: str, query: dict, url: str) -> Answer:
        resource = self.resources.get(path.lower())
        if resource is not None:
            return Answer(200, resource)
        collection = self._collection(path, query)
        if collection is None:
            return _error(404, "UserError" if "/versions/" in path else "ResourceNotFound",
                          _not_found_message(path))
        return self._page(collection, query, url)

    def _collection(self, path: str, query: dict) -> list[dict] | None:
        relative = path[len(self.prefix):].strip("/").split("/")
        if len(relative) % 2 == 0:
            return None  # a single resource that does not exist
        prefix = path.lower().rstrip("/") + "/"
        items = [resource for key, resource in self.resources.items()
                 if key.startswith(prefix) and "/" not in key[len(prefix):]]
        if "hash" in query:
            items = [r for r in items if r["properties"].get("properties", {}).get("__hash") == query["hash"]
                     or r["properties"].get("hash") == query["hash"]]
        items.sort(key=lambda r: r["systemData"]["createdAt"], reverse="desc" in query.get("$orderBy", "").lower()
                   or "/versions" in path)
        if "$top" in query:
            items = items[: int(query["$top"])]
        return items

    def _page(self, items: list[dict], query: dict, url: str) -> Answer:
        """One page of a list and, when more follow, its `nextLink`: this URL again with the continuation token
        in the query parameter the spec names for Azure ML's lists (PaginationParameter, `$skip`: "Continuation
        token for pagination.", machineLearningServices.json and workspaceRP.json). The token is opaque (base64
        with `=` padding, so it is percent-encoded in the link); one the service did not issue is refused."""
        start = _skip_offset(query.get(PAGE_PARAMETER) or "")
        if start is None:
            return _error(400, "UserError", f"The continuation token {PAGE_PARAMETER}="
                          f"{query[PAGE_PARAMETER]!r} is not valid; list again from the first page.")
        page = items[start: start + self.page_size]
        body: dict = {"value": page}
        if start + self.page_size < len(items):
            parts = urlsplit(url)
            next_query = {**query, PAGE_PARAMETER: _skip_token(start + self.page_size)}
            body["nextLink"] = f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(next_query)}"
        return Answer(200, body)

    def _pending_upload(self, payload: dict) -> Answer:
        """Like the service: a new container for this upload and a SAS for it that Azurite honours; the client
        uploads to the container's root."""
        from datetime import timedelta

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        upload = uuid.uuid4().hex
        self.storage.create_container(upload)
        sas = generate_container_sas(self.storage_account, upload, account_key=self.storage_key,
                                     permission=ContainerSasPermissions(read=True, write=True, create=True,
                                                                        list=True, add=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        blob_uri = f"https://{self.storage_account}.blob.{self.storage_suffix}/{upload}"
        storage_id = self.resources[self.prefix.lower()]["properties"]["storageAccount"]
        return Answer(200, {"pendingUploadId": upload, "pendingUploadType": payload.get("pendingUploadType"),
                            "blobReferenceForConsumption": {
                                "blobUri": blob_uri, "storageAccountArmId": storage_id,
                                "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{sas}"}}})

    # long-running operations (batch endpoints and deployments)

    def _create_long_running(self, path: str, payload: dict, url: str) -> Answer:
        existing = self.resources.get(path.lower())
        resource = copy.deepcopy(payload)
        kind = "batchEndpoints/deployments" if "/deployments/" in path else "batchEndpoints"
        resource.update({"id": path, "name": path.rsplit("/", 1)[-1],
                         "type": f"Microsoft.MachineLearningServices/workspaces/{kind}",
                         "systemData": self._system_data()})
        properties = resource.setdefault("properties", {})
        properties["provisioningState"] = "Creating" if not existing else "Updating"
        if kind == "batchEndpoints":
            name = resource["name"]
            properties["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/jobs"
            properties["swaggerUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/swagger.json"
            properties.setdefault("defaults", {})
        self.resources[path.lower()] = resource
        operation = uuid.uuid4().hex
        self._operations[operation] = ["InProgress", "Succeeded"]
        status_url = (f"https://{self.arm_host}/subscriptions/{self.subscription}/providers/"
                      f"Microsoft.MachineLearningServices/locations/{self.location}/mfeOperationsStatus/{operation}"
                      f"?api-version={urlsplit(url).query.split('api-version=')[-1].split('&')[0]}")
        self._operations[operation + ":resource"] = [path]
        headers = {"Azure-AsyncOperation": status_url, "Location": status_url.replace("Status", "Results")}
        return Answer(200 if existing else 201, resource, headers)

    def _operation_status(self, path: str) -> Answer:
        operation = path.rsplit("/", 1)[-1]
        if operation not in self._operations:
            return _error(404, "ResourceNotFound", "operation not found")
        resource_path = self._operations[operation + ":resource"][0]
        if "mfeoperationsresults" in path.lower():
            return Answer(200, self.resources[resource_path.lower()])
        states = self._operations[operation]
        state = states.pop(0) if len(states) > 1 else states[0]
        if state == "Succeeded" and "/batchendpoints/" in resource_path.lower():
            self.resources[resource_path.lower()]["properties"]["provisioningState"] = "Succeeded"
        return Answer(200, {"id": path, "name": operation, "status": state, "startTime": now()})

    # jobs

    def _create_job(self, path: str, payload: dict) -> Answer:
        if path.lower() in self.resources:
            return _error(409, "UserError", f"A job with this name already exists: {path.rsplit('/', 1)[-1]}")
        name = path.rsplit("/", 1)[-1]
        resource = self._materialize(path, payload, None)
        properties = resource["properties"]
        properties["status"] = "NotStarted"
        properties.setdefault("experimentName", "Default")
        properties["services"] = {"Studio": {"jobServiceType": "Studio", "endpoint":
                                             f"https://ml.azure.com/runs/{name}?wsid={self.prefix}"}}
        spec = payload["properties"].get("jobs") or self._component_jobs(properties.get("componentId"))
        steps = list(spec)
        children = {step: str(uuid.uuid4()) for step in steps}  # run history gives child runs GUIDs (recorded)
        self.resources[path.lower()] = resource
        job = {"plan": list(PLANS[self.job_plan]), "phase": 0, "children": children,
               "child_status": {step: "NotStarted" for step in steps}, "outputs": {}, "child_outputs": {},
               "experiment": properties["experimentName"], "spec": spec, "errors": {}, "logs": {}}
        if self.job_plan == "fail":
            job["errors"][steps[0]] = ("Execution failed. User process 'python' exited with status code 1. Please "
                                       "check log file 'user_logs/std_log.txt' for error details.")
        self._jobs[name] = job
        failure = self._execution_failure(resource["properties"], spec)
        if failure:  # accepted at submit, fails when it runs (the execution service's checks)
            step, message = failure
            index = steps.index(step)
            job["errors"][step] = message
            job["plan"] = [("NotStarted", {}), ("Queued", {}), ("Running", {index: "Running"}),
                           ("Failed", {index: "Failed", **{i: "Canceled" for i in range(index + 1, len(steps))}})]
            for done in range(index):
                job["plan"][2][1][done] = "Completed"
        return Answer(201, resource)

    def _component_jobs(self, component_id: str | None) -> dict:
        component = self.resources.get((component_id or "").lower())
        return dict((component or {}).get("properties", {}).get("componentSpec", {}).get("jobs") or {})

    # --- the service's rules for running a job ------------------------------------------------------------

    def _check_compute_ids(self, payload: dict) -> Answer | None:
        """A job's computes must be ARM ids of computes: MFE checks the id's format when the job is submitted
        ("MFE only validates compute resource url format. Execution service owns the real validation",
        azure-ai-ml 1.35.2 operations/_job_operations.py:1739); azure-ai-ml turns a plain name into that id
        (operations/_operation_orchestrator.py get_asset_arm_id) but keeps an `azureml:` prefix in it."""
        for where, value in self._compute_ids(payload.get("properties") or {}):
            if not self._compute_name(value):
                return _error(400, "UserError", f"Invalid compute '{value}' in {where}: expected the ARM id "
                              f"{self.prefix}/computes/<compute name> of a compute of this workspace.")
        return None

    @staticmethod
    def _compute_ids(properties: dict) -> list[tuple[str, str]]:
        found = [("computeId", properties.get("computeId")),
                 ("settings.default_compute", (properties.get("settings") or {}).get("default_compute"))]
        found += [(f"jobs.{step}.compute", (node or {}).get("computeId") or (node or {}).get("compute"))
                  for step, node in (properties.get("jobs") or {}).items()]  # a node's keys are snake_case
        return [(where, value) for where, value in found if value]

    def _compute_name(self, compute_id: str) -> str | None:
        match = re.fullmatch(re.escape(self.prefix) + f"/computes/({COMPUTE_NAME})", compute_id, re.I)
        return match.group(1) if match else None

    def _execution_failure(self, properties: dict, spec: dict) -> tuple[str, str] | None:
        """(step, error) of the first step that cannot run: its compute does not exist, or an input it mounts
        cannot be read (the execution service's checks, made when the job runs, not when it is submitted)."""
        steps = list(spec)
        if not steps:
            return None
        computes = self._compute_ids(properties)
        compute = self.resources.get(computes[0][1].lower()) if computes else None
        if computes and compute is None:
            name = self._compute_name(computes[0][1])
            # the wording is ours: no recording of a job on a deleted compute; the v1 service said
            # "AzureMLCompute cluster <name> does not exist" (Azure/MachineLearningNotebooks#906)
            return steps[0], (f"Compute '{name}' was not found in workspace {self.workspace}; it may have been "
                              "deleted. Create it or submit the job to an existing compute.")
        for step in steps:
            for input_name, uri in self._mounted_inputs(properties, spec[step]):
                problem = self._data_access_problem(uri, input_name, properties, compute)
                if problem:
                    return step, problem
        return None

    @staticmethod
    def _mounted_inputs(properties: dict, node: dict) -> list[tuple[str, str]]:
        """The datastore URIs a step mounts: its inputs bound to the job's uri_file/uri_folder inputs."""
        found = []
        for input_name, binding in ((node or {}).get("inputs") or {}).items():
            match = re.search(r"\$\{\{parent\.inputs\.([^}]+)\}\}", json.dumps(binding))
            job_input = (properties.get("inputs") or {}).get(match.group(1).strip()) if match else None
            if isinstance(job_input, dict) and job_input.get("uri"):
                found.append((input_name, job_input["uri"]))
        return found

    def _data_access_problem(self, uri: str, input_name: str, properties: dict, compute: dict | None) -> str | None:
        """A datastore without stored credentials is read with the job's identity if it has one, else the
        compute's managed identity ("If you don't specify the identity property and the datastore doesn't have
        cached credentials, the system uses compute managed identity as a fallback";
        https://learn.microsoft.com/azure/machine-learning/how-to-identity-based-service-authentication), which
        needs at least Storage Blob Data Reader on the account; an identity set on a pipeline job that runs a
        pipeline component "doesn't function" (same page), so it is ignored there. Refused reads fail the step
        with ScriptExecution.StreamAccess.Authentication
        (https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-data-access), a missing path
        with ScriptExecution.StreamAccess.NotFound."""
        match = re.fullmatch(r"azureml://datastores/([^/]+)/paths/(.+)", uri)
        if not match:
            return None
        datastore = self.resources.get(f"{self.prefix}/datastores/{match.group(1)}".lower())
        if datastore is None:
            return (f"Failed to resolve datastore '{match.group(1)}' of input {input_name}. Error Code: "
                    "ScriptExecution.DatastoreResolution.NotFound")
        store = datastore["properties"]
        mount = f"Failed to mount URI {uri} at mount point /mnt/azureml/cr/j/{uuid.uuid4().hex}/cap/data-capability/" \
                f"wd/INPUT_{input_name}."
        if (store.get("credentials") or {}).get("credentialsType", "None") == "None":
            principal = self._reading_identity(properties, compute)
            if not principal or not self._may_read_blobs(principal, store["accountName"], store["containerName"]):
                return (f"{mount} Error Code: ScriptExecution.StreamAccess.Authentication. Native Error: error in "
                        "streaming from input data sources StreamError(PermissionDenied(Some(This request is not "
                        "authorized to perform this operation using this permission.)))")
        exists = getattr(self.storage, "exists", None)
        if exists is not None and store["accountName"] == self.storage_account and \
                not exists(store["containerName"], match.group(2)):
            return (f"{mount} Error Code: ScriptExecution.StreamAccess.NotFound. Native Error: error in streaming "
                    "from input data sources StreamError(NotFound)")
        return None

    def _reading_identity(self, properties: dict, compute: dict | None) -> str | None:
        identity = properties.get("identity") or {}
        own = properties.get("jobType") != "Pipeline" or not properties.get("componentId")
        if own and identity.get("identityType") == "UserIdentity":
            return self._caller
        if own and identity.get("identityType") == "Managed" and identity.get("objectId"):
            return identity["objectId"]
        return ((compute or {}).get("identity") or {}).get("principalId")

    def _may_read_blobs(self, principal: str, account: str, container: str) -> bool:
        account_id = (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
                      f"Microsoft.Storage/storageAccounts/{account}")
        covered = {f"/subscriptions/{self.subscription}", f"/subscriptions/{self.subscription}/resourceGroups/"
                   f"{self.resource_group}", account_id, f"{account_id}/blobServices/default/containers/{container}"}
        return any(assignment.principal_id == principal and assignment.role_definition_id in BLOB_READ_ROLES
                   and assignment.scope.lower() in {scope.lower() for scope in covered}
                   for assignment in self.deployment.role_assignments)

    def _check_batch_names(self, path: str) -> Answer | None:
        name = re.search(r"/batchEndpoints/([^/]+)", path, re.I).group(1)
        if not re.fullmatch(ENDPOINT_NAME, name):
            return _error(400, "UserError", f"Endpoint name '{name}' is invalid: it must begin with a letter, be 3-32 "
                          "characters long and hold only letters, digits and hyphens.")
        new_endpoint = "/deployments/" not in path and path.lower() not in self.resources
        if new_endpoint and name.lower() in {taken.lower() for taken in self.region_endpoint_names}:
            # ansible-collections/azure#2231 (the service's answer to a batch endpoint name taken in the region)
            return _error(400, "UserError", f"The specified endpoint name '{name}' is not available. Endpoint names "
                          "must be unique within the region. Please choose a different name and try again.")
        return None

    def _check_deployment_compute(self, payload: dict) -> Answer | None:
        """A pipeline component deployment's default compute names an existing compute (a name or its ARM id)."""
        settings = ((payload.get("properties") or {}).get("deploymentConfiguration") or {}).get("settings") or {}
        compute = settings.get("default_compute")
        if not compute:
            return None
        name = self._compute_name(compute) if compute.startswith("/") else compute
        if not name or f"{self.prefix}/computes/{name}".lower() not in self.resources:
            return _error(400, "UserError", f"Compute '{compute}' of the deployment's settings.default_compute was "
                          f"not found in workspace {self.workspace}.")
        return None

    def _put_model(self, path: str, payload: dict) -> Answer:
        """A model version from a job output: the service resolves `azureml://jobs/<job>/outputs/<output>` when the
        version is created, refuses it when no blob is there, and keeps the datastore path it resolved to, which
        is what azure-ai-ml's models.download reads back."""
        uri = (payload.get("properties") or {}).get("modelUri") or ""
        match = re.fullmatch(r"azureml://jobs/([^/]+)/outputs/([^/]+)/?", uri)
        if match:
            folder = self._jobs.get(match.group(1), {}).get("outputs", {}).get(match.group(2))
            if folder is None:
                return _error(400, "UserError", "No blobs found in storage at model asset path: "
                                                f"azureml/{match.group(1)}/{match.group(2)}/")
            payload = copy.deepcopy(payload)
            payload["properties"]["modelUri"] = (
                f"azureml://subscriptions/{self.subscription}/resourcegroups/{self.resource_group}/workspaces/"
                f"{self.workspace}/datastores/workspaceblobstore/paths/{folder}/")
        return self._put(path, payload)

    def _component_steps(self, component_id: str | None) -> list[str]:
        """The steps of the pipeline component a job runs (the service expands it)."""
        component = self.resources.get((component_id or "").lower())
        spec = (component or {}).get("properties", {}).get("componentSpec", {})
        return list(spec.get("jobs") or {})

    def _get_job(self, path: str) -> Answer:
        resource = self.resources.get(path.lower())
        child = self._child(path.rsplit("/", 1)[-1])
        if resource is None and child is not None:
            # child jobs are not in MFE: id, name, type and systemData only, no properties (recorded, d0dbcead);
            # azure-ai-ml then reads the child from run history
            return Answer(200, {"id": path, "name": path.rsplit("/", 1)[-1], "systemData": self._system_data(),
                                "type": "Microsoft.MachineLearningServices/workspaces/jobs"}, unchecked=True)
        if resource is None:
            return _error(404, "UserError", _not_found_message(path))
        name = resource["name"]
        if name in self._jobs:
            self._advance(name, resource)
        return Answer(200, resource)

    def _advance(self, name: str, resource: dict) -> None:
        job = self._jobs[name]
        if resource["properties"]["status"] == "CancelRequested":
            job["cancel_polls"] = job.get("cancel_polls", 0) + 1
            if job["cancel_polls"] > self.polls_per_phase:
                self._finish_cancel(name, resource)
            return
        if resource["properties"]["status"] in ("Completed", "Failed", "Canceled"):
            return
        plan = job["plan"]
        status, children = plan[min(job["phase"] // self.polls_per_phase, len(plan) - 1)]
        job["phase"] += 1
        steps = list(job["children"])
        for index, child_status in children.items():
            job["child_status"][steps[index]] = child_status
        resource["properties"]["status"] = status
        if status == "Completed":
            self._write_outputs(name, resource)
        if status in ("Completed", "Failed"):
            self._write_logs(name)

    def _write_outputs(self, name: str, resource: dict) -> None:
        """Each pipeline output is the output of the step bound to it, written where that step's child run
        writes: azureml/<child run id>/<step output>/ in the default datastore (recorded, d0dbcead)."""
        outputs = resource["properties"].get("outputs") or {}
        job = self._jobs[name]
        for output, files in self.job_outputs.items():
            if output not in outputs:
                continue
            step, step_output = self._producer(job["spec"], output)
            child = job["children"].get(step, name)
            folder = f"azureml/{child}/{step_output}"
            for relative, content in files.items():
                self.storage.write(self.container, f"{folder}/{relative}", content)
            job["outputs"][output] = folder
            job["child_outputs"].setdefault(child, {})[step_output] = folder

    @staticmethod
    def _producer(spec: dict, output: str) -> tuple[str, str]:
        """(step, its output) bound to the pipeline output `output` (${{parent.outputs.<output>}})."""
        for step, node in spec.items():
            for step_output, binding in ((node or {}).get("outputs") or {}).items():
                if f"parent.outputs.{output}}}" in json.dumps(binding).replace(" ", ""):
                    return step, step_output
        return "", output

    def _write_logs(self, name: str) -> None:
        """Each step that ran leaves its logs in the artifact store, under ExperimentRun/dcid.<child run id>/
        (recorded, d0dbcead); a step that failed before the user's process started (data access) has none."""
        job = self._jobs[name]
        if job.get("logs_written") or self.storage is None:
            return
        job["logs_written"] = True
        _create_container(self.storage, self.artifact_container)
        for step, child in job["children"].items():
            status = job["child_status"][step]
            if status == "Completed" or (status == "Failed" and "ScriptExecution." not in job["errors"].get(step, "")):
                text = self.step_logs.get(step, f"{step}: done\n" if status == "Completed" else
                                          f"{step}: the script failed\n")
                self.storage.write(self.artifact_container, f"ExperimentRun/dcid.{child}/user_logs/std_log.txt",
                                   text.encode())

    def _cancel_job(self, path: str, url: str) -> Answer:
        resource = self.resources.get(path.lower())
        if resource is None:
            return _error(404, "UserError", _not_found_message(path))
        if resource["properties"]["status"] not in ("Completed", "Failed", "Canceled"):
            resource["properties"]["status"] = "CancelRequested"
        operation = uuid.uuid4().hex
        self._operations[operation] = ["Succeeded"]
        self._operations[operation + ":resource"] = [path]
        location = (f"https://{self.arm_host}/subscriptions/{self.subscription}/providers/"
                    f"Microsoft.MachineLearningServices/locations/{self.location}/mfeOperationsStatus/{operation}"
                    "?api-version=2024-01-01-preview")
        return Answer(202, None, {"Location": location})

    def _finish_cancel(self, name: str, resource: dict) -> None:
        resource["properties"]["status"] = "Canceled"
        job = self._jobs[name]
        for step, status in job["child_status"].items():
            if status not in ("Completed", "Failed"):
                job["child_status"][step] = "Canceled"

    # --- data plane ---------------------------------------------------------------------------------------

    def _data_plane(self, method: str, path: str, query: dict, payload: Any) -> Answer:
        if path == "/discovery" and method == "GET":
            base = f"https://{self.data_host}"
            return Answer(200, {"api": base, "catalog": base, "experimentation": base, "gallery": base,
                                "history": base, "hyperdrive": base, "labeling": base, "modelmanagement": base,
                                "pipelines": base, "studiometadata": base})
        history = f"/history/v1.0{self.prefix}"
        if method == "POST" and path.lower() == f"{history}/rundata".lower():
            return self._run_data(payload["runId"])
        match = re.fullmatch(re.escape(history) + r"/runs/([^/]+)(/children)?", path, re.I)
        if match and method == "GET" and match.group(2):
            return self._run_children(match.group(1))
        if match and method == "GET":
            return self._run(match.group(1))
        if method == "POST" and path.lower() == f"/data/v1.0{self.prefix}/dataversion/batchGetResolvedUris".lower():
            return self._resolved_uris(payload["values"])
        return self._unhandled(method, f"https://{self.data_host}{path}")

    def _child(self, run_id: str) -> tuple[str, str] | None:
        """(pipeline job, step) of a child run id."""
        for name, job in self._jobs.items():
            for step, child in job["children"].items():
                if child == run_id:
                    return name, step
        return None

    def _child_run(self, run_id: str) -> dict | None:
        found = self._child(run_id)
        if found is None:
            return None
        name, step = found
        job = self._jobs[name]
        run = {"runId": run_id, "parentRunId": name, "rootRunId": name, "status": job["child_status"][step],
               "displayName": step, "name": "azureml_anonymous", "runType": "azureml.StepRun",
               "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, job["experiment"])),
               "properties": {"azureml.nodeid": step, "StepType": "CommandStep"}, "tags": {},
               "createdUtc": now(), "inputs": None, "outputs": None}
        if job["child_status"][step] == "Failed":
            run["error"] = {"error": {"code": "UserError", "message": job["errors"].get(step, "The step failed.")}}
        return run

    def _history_run(self, name: str) -> dict | None:
        resource = self.resources.get(f"{self.prefix}/jobs/{name}".lower())
        if resource is None:
            return self._child_run(name)
        properties = resource["properties"]
        run = {"runId": name, "status": properties["status"], "experimentId": str(uuid.uuid4()),
               "displayName": properties.get("displayName"), "runType": "azureml.PipelineRun",
               "tags": properties.get("tags") or {}, "properties": properties.get("properties") or {},
               "createdUtc": resource["systemData"]["createdAt"]}
        if properties["status"] == "Failed":
            run["error"] = {"error": {"code": "UserError", "message": self._failure_message(name)}}
        return run

    def _failure_message(self, name: str) -> str:
        failed = [step for step, status in self._jobs[name]["child_status"].items() if status == "Failed"]
        step = failed[0] if failed else "a step"
        return (f"Pipeline has failed child jobs. Failed nodes: /{step}. For more details and logs, please go to "
                f"the job detail page and check the child jobs.")

    def _run(self, name: str) -> Answer:
        run = self._history_run(name)
        if run is None:
            return _error(404, "UserError", f"Run {name} was not found")
        return Answer(200, run)

    def _run_children(self, name: str) -> Answer:
        job = self._jobs.get(name)
        if job is None:
            return _error(404, "UserError", f"Run {name} was not found")
        return Answer(200, {"value": [self._child_run(child) for child in job["children"].values()]})

    def _run_data(self, name: str) -> Answer:
        run = self._history_run(name)
        if run is None:
            return _error(404, "UserError", f"Run {name} was not found")
        parent = self._child(name)
        outputs = self._jobs[parent[0]]["child_outputs"].get(name, {}) if parent else \
            self._jobs.get(name, {}).get("outputs", {})
        # run history says `UriFolder` (PascalCase; recorded, d0dbcead), which azure-ai-ml 1.35's
        # get_job_output_uris_from_dataplane does not take for a data type (Azure/azure-sdk-for-python#48941)
        run["outputs"] = {output: {"type": "UriFolder", "assetId": f"azureml://locations/{self.location}/"
                                   f"workspaces/x/data/azureml_{name}_output_data_{output}/versions/1"}
                          for output in outputs}
        return Answer(200, {"runMetadata": run})

    def _output_folder(self, run_id: str, output: str) -> str | None:
        parent = self._child(run_id)
        if parent:
            return self._jobs[parent[0]]["child_outputs"].get(run_id, {}).get(output)
        return self._jobs.get(run_id, {}).get("outputs", {}).get(output)

    def _resolved_uris(self, asset_ids: list[str]) -> Answer:
        values = {}
        for asset_id in asset_ids:
            match = re.search(r"azureml_(.+)_output_data_(.+)/versions/1$", asset_id)
            folder = self._output_folder(match.group(1), match.group(2)) if match else None
            if folder:
                values[asset_id] = {"uri": f"azureml://subscriptions/{self.subscription}/resourcegroups/"
                                           f"{self.resource_group}/workspaces/{self.workspace}/datastores/"
                                           f"workspaceblobstore/paths/{folder}/", "type": "UriFolder"}
        return Answer(200, {"values": values})


def _skip_token(offset: int) -> str:
    return base64.b64encode(f"amlops-fake-offset:{offset}".encode()).decode()


def _skip_offset(token: str) -> int | None:
    """The offset an issued continuation token stands for (0 for none), None for one this fake did not issue."""
    if not token:
        return 0
    try:
        text = base64.b64decode(token, validate=True).decode()
    except ValueError:
        return None
    prefix, _, offset = text.partition(":")
    return int(offset) if prefix == "amlops-fake-offset" and offset.isdigit() else None


def _token_object_id(authorization: str) -> str:
    """The `oid` claim of a bearer JWT (who calls), "" when there is none to read."""
    try:
        payload = authorization.removeprefix("Bearer ").split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("oid") or "")
    except (IndexError, ValueError):
        return ""


def _create_container(storage: Any, name: str) -> None:
    try:
        storage.create_container(name)
    except Exception:  # noqa: BLE001 - it exists already (each storage client raises its own type)
        pass


def _content(resource: dict, key: str | None = None) -> Any:
    properties = (resource or {}).get("properties", {})
    if key:
        return properties.get(key)
    server_side = ("provisioningState", "isArchived", "isAnonymous", "autoDeleteSetting")
    return {k: v for k, v in properties.items() if k not in server_side}


def _same_asset(existing: dict, payload: dict) -> bool:
    mine = _content(existing)
    theirs = _content(payload)
    keys = ("componentSpec", "modelUri", "image", "condaFile", "codeUri")
    return all(mine.get(k) == theirs.get(k) for k in keys)


def _not_found_message(path: str) -> str:
    segments = path.strip("/").split("/")
    return f"The resource '{'/'.join(segments[-2:])}' was not found."


def _authorization_failed(action: str, scope: str) -> str:
    return (f"The client 'ci@contoso.com' with object id '{uuid.uuid4()}' does not have authorization to perform "
            f"action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
            "please refresh your credentials.")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}}, dict(headers or {}))


class _Adapter(HTTPAdapter):
    """A `requests` adapter that answers from the fake instead of opening a connection."""

    def __init__(self, fake: FakeAzureML):
        super().__init__()
        self.fake = fake

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        host = urlsplit(request.url).hostname
        if host not in (self.fake.arm_host, self.fake.data_host):  # storage: the real network (Azurite)
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        answer = self.fake.handle(request.method, request.url, dict(request.headers), body)
        content = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(content)),
                   "x-ms-request-id": str(uuid.uuid4()), **answer.headers}
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), headers=headers, status=answer.status,
                                   reason=_REASONS.get(answer.status, "OK"), preload_content=False,
                                   decode_content=False)
        return self.build_response(request, raw)


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}
