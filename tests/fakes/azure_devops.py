"""A loopback fake of the Azure DevOps REST API 7.1 (Location, Core, Git, Build, Policy) for tests.

A real HTTP server on 127.0.0.1 that answers the way dev.azure.com does, as far as the `azure-devops`
Python client can tell:

* `OPTIONS {org}/_apis` and `GET {org}/_apis/ResourceAreas` replay the answers recorded from
  dev.azure.com (shared/specs/azure-devops/rest-7.1), their URLs rewritten to this server;
* routes match whatever their case; the api-version arrives in the `Accept` header (a call without one
  is refused); lists are wrapped as `{"count": n, "value": [...]}`; errors have the service's JSON shape;
* every request needs the token, as `Basic base64(any:token)` or `Bearer token` (else 401);
* policy configurations live in memory: listing pages `page_size` at a time with a continuation token,
  a stored policy gets an id, a revision, a url, createdBy and its type's display name, its scope's
  `matchKind` is stored capitalised (`Exact`) and settings that are `false` are dropped;
* every POST/PUT body is validated against `PolicyConfiguration` of policy.json (allOf merged, unknown
  top-level properties refused: the service would drop them silently) and against what the service
  checks itself (known type, a scope, repositories of the project); a body that fails is answered 400
  and kept in `invalid_bodies`.

`fail_next(n, method, path_contains)` makes the next n matching requests fail with 500. Everything that
arrives is kept in `requests`; a route the fake does not know is answered 404 and kept in `unhandled`.
"""
from __future__ import annotations

import base64
import copy
import datetime
import fnmatch
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema

BUILD = "0609b952-1397-4640-95ec-e00a01b2c241"
MIN_REVIEWERS = "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd"
COMMENTS = "c6a1889d-b943-4856-b76f-9e46bb6b0df2"
POLICY_TYPES = {
    BUILD: "Build",
    MIN_REVIEWERS: "Minimum number of reviewers",
    COMMENTS: "Comment requirements",
    "fd2167ab-b0be-447a-8ec8-39368250530e": "Required reviewers",
    "40e92b44-2fe1-4dd6-b3d8-74a9c21d0c6e": "Work item linking",
    "fa4e907d-c16b-4a4c-9dfa-4916e5d171ab": "Require a merge strategy",
    "7ed39669-655c-494e-b4a0-a08b4da0fcce": "Git repository settings",
    "2e26e725-8201-4edd-8bf5-978563c34a80": "File size restriction",
}
MATCH_KINDS = {"exact": "Exact", "prefix": "Prefix", "defaultbranch": "DefaultBranch"}
_IDENTITY_ID = "d6245f20-2af8-44f4-9451-8107cb2767db"


@dataclass
class Project:
    id: str
    name: str


@dataclass
class Repository:
    id: str
    name: str
    project: Project
    default_branch: str


@dataclass
class Definition:
    id: int
    name: str
    path: str
    project: Project


@dataclass
class Request:
    """One request as it arrived (body parsed as JSON when it is JSON)."""
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0

    @property
    def api_version(self) -> str | None:
        match = re.search(r"api-version=([^;,\s]+)", self.headers.get("accept", ""))
        return match.group(1) if match else self.query.get("api-version")

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class _Failure:
    remaining: int
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and self.method in (None, method)
                and (self.path_contains is None or self.path_contains.lower() in path.lower()))


class _Reply(Exception):
    def __init__(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
                 content_type: str = "application/json; charset=utf-8"):
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = headers or {}
        self.content_type = content_type


def _service_error(status: int, message: str, type_key: str, type_name: str) -> _Reply:
    return _Reply(status, {"$id": "1", "innerException": None, "message": message, "typeName": type_name,
                           "typeKey": type_key, "errorCode": 0, "eventId": 3000})


def _bad_request(message: str) -> _Reply:
    return _service_error(400, message, "ArgumentException", "System.ArgumentException, mscorlib")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAzureDevOps:
    """The fake service; use as a context manager (or start()/stop()). `org_url` is what clients use."""

    def __init__(self, specs_dir: Path, token: str = "fake-token", org: str = "fabrikam", page_size: int = 2,
                 unauthorized_body: str = "json"):
        self.rest_dir = Path(specs_dir) / "azure-devops" / "rest-7.1"
        self.token = token
        self.org = org
        self.page_size = page_size
        self.unauthorized_body = unauthorized_body
        self.requests: list[Request] = []
        self.invalid_bodies: list[tuple[Request, str]] = []
        self.unhandled: list[Request] = []
        self.projects: list[Project] = []
        self.repositories: list[Repository] = []
        self.definitions: list[Definition] = []
        self._policies: dict[int, dict[str, Any]] = {}
        self._policy_project: dict[int, Project] = {}
        self._failures: list[_Failure] = []
        self._next_id = 1
        self._lock = threading.RLock()
        self._validator = _policy_validator(self.rest_dir / "policy.json")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- life cycle -----------------------------------------------------------------------------------

    def start(self) -> "FakeAzureDevOps":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-azure-devops", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeAzureDevOps":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def org_url(self) -> str:
        return f"{self.base_url}/{self.org}"

    # ----- arranging ------------------------------------------------------------------------------------

    def add_project(self, name: str) -> Project:
        project = Project(str(uuid.uuid4()), name)
        self.projects.append(project)
        return project

    def add_repository(self, project: Project, name: str,
                       default_branch: str = "refs/heads/main") -> Repository:
        repository = Repository(str(uuid.uuid4()), name, project, default_branch)
        self.repositories.append(repository)
        return repository

    def add_definition(self, project: Project, name: str, path: str = "\\") -> Definition:
        definition = Definition(len(self.definitions) + 11, name, path, project)
        self.definitions.append(definition)
        return definition

    def add_policy(self, project: Project, body: dict[str, Any]) -> dict[str, Any]:
        """Stores a policy as if someone had created it (no validation, not recorded as a request)."""
        with self._lock:
            return self._store_policy(project, copy.deepcopy(body), None)

    def fail_next(self, count: int, method: str | None = None, path_contains: str | None = None) -> None:
        """The next `count` requests (of `method`, to a path containing `path_contains`) get a 500."""
        with self._lock:
            self._failures.append(_Failure(count, method, path_contains))

    # ----- inspecting -----------------------------------------------------------------------------------

    def policies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._policies[key]) for key in sorted(self._policies)]

    def writes(self) -> list[Request]:
        return [request for request in self.requests if request.is_write]

    # ----- serving --------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw_body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {key: value for key, value in parse_qsl(parts.query, keep_blank_values=True)}
        request = Request(method, path, query, headers, _parse_body(raw_body))
        with self._lock:
            self.requests.append(request)
            try:
                reply = self._route(request, raw_body)
            except _Reply as answer:
                reply = answer
            request.status = reply.status
        return self._encode(reply)

    def _route(self, request: Request, raw_body: bytes) -> _Reply:
        self._maybe_fail(request)
        self._authenticate(request)
        segments = [segment for segment in request.path.split("/") if segment]
        if not segments or segments[0].lower() != self.org.lower():
            raise self._unhandled(request)
        rest = segments[1:]
        lowered = [segment.lower() for segment in rest]
        if lowered == ["_apis"] and request.method == "OPTIONS":
            return _Reply(200, self._recorded("recorded-options-apis.json"))
        if lowered == ["_apis", "resourceareas"] and request.method == "GET":
            return _Reply(200, self._recorded("recorded-resourceareas.json"))
        self._require_api_version(request)
        if len(rest) == 3 and lowered[:2] == ["_apis", "projects"] and request.method == "GET":
            return _Reply(200, self._project_json(self._project(rest[2])))
        if len(rest) >= 3 and lowered[1] == "_apis":
            return self._project_route(request, self._project(rest[0]), lowered[2:], rest[2:], raw_body)
        raise self._unhandled(request)

    def _project_route(self, request: Request, project: Project, lowered: list[str], names: list[str],
                       raw_body: bytes) -> _Reply:
        method = request.method
        if lowered[:2] == ["git", "repositories"] and len(lowered) == 3 and method == "GET":
            return _Reply(200, self._repository_json(self._repository(project, names[2])))
        if lowered == ["git", "policy", "configurations"] and method == "GET":
            return self._git_policy_list(request, project)
        if lowered == ["build", "definitions"] and method == "GET":
            return self._definition_list(request, project)
        if lowered[:2] == ["build", "definitions"] and len(lowered) == 3 and method == "GET":
            return _Reply(200, self._definition_json(self._definition(project, names[2])))
        if lowered[:2] == ["policy", "configurations"]:
            return self._policy_route(request, project, names[2:], raw_body)
        raise self._unhandled(request)

    def _policy_route(self, request: Request, project: Project, ids: list[str], raw_body: bytes) -> _Reply:
        method = request.method
        if not ids and method == "GET":
            wanted = request.query.get("policyType", "").lower()
            found = [policy for policy in self._project_policies(project)
                     if not wanted or policy["type"]["id"] == wanted]
            return self._page(request, found, "X-MS-ContinuationToken")
        if not ids and method == "POST":
            body = self._valid_policy_body(request, project, raw_body)
            return _Reply(200, self._store_policy(project, body, None))
        if len(ids) == 1 and method in ("GET", "PUT", "DELETE"):
            existing = self._policy(project, ids[0])
            if method == "GET":
                return _Reply(200, copy.deepcopy(existing))
            if method == "DELETE":
                del self._policies[existing["id"]]
                return _Reply(204)
            body = self._valid_policy_body(request, project, raw_body)
            return _Reply(200, self._store_policy(project, body, existing))
        raise self._unhandled(request)

    # ----- behaviours -----------------------------------------------------------------------------------

    def _maybe_fail(self, request: Request) -> None:
        for failure in self._failures:
            if failure.matches(request.method, request.path):
                failure.remaining -= 1
                raise _service_error(
                    500, f"TF400898: An Internal Error Occurred. Activity Id: {uuid.uuid4()}.",
                    "InvalidOperationException", "System.InvalidOperationException, mscorlib")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if decoded.partition(":")[2] == self.token:
                return
        elif scheme.lower() == "bearer" and value == self.token:
            return
        challenge = {"WWW-Authenticate": 'Bearer authorization_uri=https://login.microsoftonline.com/common, '
                                         'Basic realm="https://dev.azure.com/"'}
        if self.unauthorized_body == "html":
            page = "<html><body>Access Denied: The Personal Access Token used has expired.</body></html>"
            raise _Reply(401, page, challenge, "text/html; charset=utf-8")
        error = _service_error(401, "TF400813: The user '' is not authorized to access this resource.",
                               "UnauthorizedRequestException",
                               "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
                               "Microsoft.TeamFoundation.Framework.Server")
        error.headers.update(challenge)
        raise error

    def _require_api_version(self, request: Request) -> None:
        if not request.api_version:
            raise _service_error(
                400, f"No api-version was supplied for the {request.method} request. Please provide an "
                     "api-version, for example api-version=7.1.",
                "VssVersionNotSpecifiedException",
                "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, "
                "Microsoft.VisualStudio.Services.WebApi")

    def _unhandled(self, request: Request) -> _Reply:
        self.unhandled.append(request)
        return _Reply(404, "<html><body>The resource cannot be found.</body></html>", None,
                      "text/html; charset=utf-8")

    def _recorded(self, name: str) -> Any:
        text = (self.rest_dir / name).read_text(encoding="utf-8-sig")
        recorded_org = re.search(r"https://dev\.azure\.com/([^/\"]+)/", text)
        if recorded_org:
            pattern = r"https://([a-z0-9]+\.)?dev\.azure\.com/" + re.escape(recorded_org.group(1)) + "/"
            text = re.sub(pattern, self.org_url + "/", text, flags=re.IGNORECASE)
        return json.loads(text)

    # ----- projects, repositories, definitions ----------------------------------------------------------

    def _project(self, name_or_id: str) -> Project:
        for project in self.projects:
            if name_or_id.lower() in (project.id, project.name.lower()):
                return project
        raise _service_error(
            404, f"TF200016: The following project does not exist: {name_or_id}. Verify that the name of the "
                 "project is correct and that the project exists on the specified Azure DevOps Server.",
            "ProjectDoesNotExistWithNameException",
            "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
            "Microsoft.TeamFoundation.Core.WebApi")

    def _repository(self, project: Project, name_or_id: str) -> Repository:
        for repository in self.repositories:
            if repository.project is project and name_or_id.lower() in (repository.id,
                                                                        repository.name.lower()):
                return repository
        raise _service_error(
            404, f"TF401019: The Git repository with name or identifier {name_or_id} does not exist or you "
                 "do not have permissions for the operation you are attempting.",
            "GitRepositoryNotFoundException",
            "Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, "
            "Microsoft.TeamFoundation.Git.Server")

    def _definition(self, project: Project, definition_id: str) -> Definition:
        for definition in self.definitions:
            if definition.project is project and str(definition.id) == definition_id:
                return definition
        raise _service_error(
            404, f"The requested build definition {definition_id} could not be found.",
            "DefinitionNotFoundException",
            "Microsoft.TeamFoundation.Build.WebApi.DefinitionNotFoundException, "
            "Microsoft.TeamFoundation.Build2.WebApi")

    def _project_json(self, project: Project) -> dict[str, Any]:
        return {"id": project.id, "name": project.name, "url": f"{self.org_url}/_apis/projects/{project.id}",
                "state": "wellFormed", "revision": 11, "visibility": "private", "lastUpdateTime": _now()}

    def _repository_json(self, repository: Repository) -> dict[str, Any]:
        web = f"{self.org_url}/{repository.project.name}/_git/{repository.name}"
        return {"id": repository.id, "name": repository.name,
                "url": f"{self.org_url}/{repository.project.id}/_apis/git/repositories/{repository.id}",
                "project": self._project_json(repository.project), "defaultBranch": repository.default_branch,
                "size": 1024, "remoteUrl": web, "sshUrl": f"git@ssh.dev.azure.com:v3/{self.org}/x/x",
                "webUrl": web, "isDisabled": False, "isInMaintenance": False}

    def _definition_json(self, definition: Definition) -> dict[str, Any]:
        return {"id": definition.id, "name": definition.name, "path": definition.path, "type": "build",
                "queueStatus": "enabled", "revision": 1, "quality": "definition", "drafts": [],
                "url": f"{self.org_url}/{definition.project.id}/_apis/build/Definitions/{definition.id}",
                "uri": f"vstfs:///Build/Definition/{definition.id}", "createdDate": _now(),
                "project": self._project_json(definition.project)}

    def _definition_list(self, request: Request, project: Project) -> _Reply:
        name = request.query.get("name", "*").lower()
        found = [self._definition_json(definition) for definition in self.definitions
                 if definition.project is project and fnmatch.fnmatchcase(definition.name.lower(), name)]
        return _Reply(200, {"count": len(found), "value": found})

    # ----- policies -------------------------------------------------------------------------------------

    def _project_policies(self, project: Project) -> list[dict[str, Any]]:
        return [copy.deepcopy(self._policies[key]) for key in sorted(self._policies)
                if self._policy_project[key] is project]

    def _policy(self, project: Project, configuration_id: str) -> dict[str, Any]:
        key = int(configuration_id) if configuration_id.isdigit() else -1
        if key not in self._policies or self._policy_project[key] is not project:
            raise _service_error(
                404, f"TF400779: The policy configuration with ID {configuration_id} does not exist.",
                "PolicyConfigurationNotFoundException",
                "Microsoft.TeamFoundation.Policy.WebApi.PolicyConfigurationNotFoundException, "
                "Microsoft.TeamFoundation.Policy.WebApi")
        return self._policies[key]

    def _git_policy_list(self, request: Request, project: Project) -> _Reply:
        repository_id = request.query.get("repositoryId") or None
        ref_name = request.query.get("refName") or None
        wanted = request.query.get("policyType", "").lower()
        repository = self._repository(project, repository_id) if repository_id else None
        found = [policy for policy in self._project_policies(project)
                 if (not wanted or policy["type"]["id"] == wanted) and _applies(policy, repository, ref_name)]
        return self._page(request, found, "x-ms-continuationtoken")

    def _page(self, request: Request, found: list[dict[str, Any]], token_header: str) -> _Reply:
        """Pages by id: the continuation token is the id of the first policy of the next page."""
        start = int(request.query.get("continuationToken") or 0)
        top = int(request.query.get("$top") or self.page_size)
        remaining = [policy for policy in found if policy["id"] >= start]
        page = remaining[:min(top, self.page_size)]
        headers = {token_header: str(remaining[len(page)]["id"])} if len(remaining) > len(page) else {}
        return _Reply(200, {"count": len(page), "value": page}, headers)

    def _valid_policy_body(self, request: Request, project: Project, raw_body: bytes) -> dict[str, Any]:
        body = request.body
        problem = None
        if not isinstance(body, dict):
            problem = f"the body is not a JSON object: {raw_body[:80]!r}"
        else:
            errors = sorted(self._validator.iter_errors(body), key=lambda error: list(error.path))
            problem = (f"{'/'.join(str(part) for part in errors[0].path) or '(body)'}: {errors[0].message}"
                       if errors else self._service_checks(body, project))
        if problem:
            self.invalid_bodies.append((request, problem))
            raise _bad_request(f"Invalid policy configuration: {problem}")
        return copy.deepcopy(body)

    def _service_checks(self, body: dict[str, Any], project: Project) -> str | None:
        type_id = str((body.get("type") or {}).get("id", "")).lower()
        settings = body.get("settings")
        if type_id not in POLICY_TYPES:
            return f"type.id: unknown policy type {type_id or '(none)'}"
        if not isinstance(settings, dict) or not isinstance(settings.get("scope"), list) \
                or not settings["scope"]:
            return "settings.scope: a policy needs a scope (a list of repository/ref entries)"
        for entry in settings["scope"]:
            problem = self._scope_problem(entry, project)
            if problem:
                return problem
        if type_id == MIN_REVIEWERS:
            count = settings.get("minimumApproverCount")
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
                return f"settings.minimumApproverCount: {count!r} is not a number from 1 to 10"
        if type_id == BUILD and not isinstance(settings.get("buildDefinitionId"), int):
            return "settings.buildDefinitionId: the build policy needs the id of a pipeline"
        return None

    def _scope_problem(self, entry: Any, project: Project) -> str | None:
        if not isinstance(entry, dict):
            return f"settings.scope: {entry!r} is not an object"
        kind = entry.get("matchKind")
        if kind is not None and str(kind).lower() not in MATCH_KINDS:
            return f"settings.scope.matchKind: {kind!r} is not one of Exact, Prefix, DefaultBranch"
        repository_id = entry.get("repositoryId")
        if repository_id is not None:
            try:
                self._repository(project, str(repository_id))
            except _Reply:
                return f"settings.scope.repositoryId: no repository {repository_id} in project {project.name}"
        return None

    def _store_policy(self, project: Project, body: dict[str, Any], existing: dict[str, Any] | None
                      ) -> dict[str, Any]:
        """Stores the way the service does: false settings dropped, matchKind capitalised, ids assigned."""
        type_id = str(body["type"]["id"]).lower()
        if existing is None:
            policy_id, revision = self._next_id, 1
            self._next_id += 1
            created = {"createdBy": self._identity(), "createdDate": _now()}
        else:
            policy_id, revision = existing["id"], existing["revision"] + 1
            created = {"createdBy": existing["createdBy"], "createdDate": existing["createdDate"]}
        url = f"{self.org_url}/{project.id}/_apis/policy/configurations/{policy_id}"
        type_url = f"{self.org_url}/{project.id}/_apis/policy/types/{type_id}"
        policy = {**created, "isEnabled": bool(body.get("isEnabled")),
                  "isBlocking": bool(body.get("isBlocking")), "isDeleted": False,
                  "settings": _stored_settings(body.get("settings") or {}),
                  "_links": {"self": {"href": url}, "policyType": {"href": type_url}},
                  "revision": revision, "id": policy_id, "url": url,
                  "type": {"id": type_id, "url": type_url,
                           "displayName": POLICY_TYPES.get(type_id, "Custom")}}
        self._policies[policy_id] = policy
        self._policy_project[policy_id] = project
        return copy.deepcopy(policy)

    def _identity(self) -> dict[str, Any]:
        return {"displayName": "Fake Builder", "id": _IDENTITY_ID, "uniqueName": "builder@fabrikam.example",
                "url": f"{self.org_url}/_apis/Identities/{_IDENTITY_ID}"}

    def _encode(self, reply: _Reply) -> tuple[int, dict[str, str], bytes]:
        headers = dict(reply.headers)
        if reply.payload is None:
            return reply.status, headers, b""
        headers["Content-Type"] = reply.content_type
        if isinstance(reply.payload, str):
            return reply.status, headers, reply.payload.encode("utf-8")
        return reply.status, headers, json.dumps(reply.payload).encode("utf-8")


def _stored_settings(settings: dict[str, Any]) -> dict[str, Any]:
    stored: dict[str, Any] = {}
    for key, value in settings.items():
        if value is False:
            continue
        if key == "scope" and isinstance(value, list):
            value = [_stored_scope(entry) for entry in value]
        if key == "validDuration" and isinstance(value, (int, float)):
            value = float(value)
        stored[key] = copy.deepcopy(value)
    return stored


def _stored_scope(entry: dict[str, Any]) -> dict[str, Any]:
    stored: dict[str, Any] = {}
    if "refName" in entry or "matchKind" in entry:  # a branch scope; else the whole repository (or project)
        kind = entry.get("matchKind")
        stored["refName"] = entry.get("refName")
        stored["matchKind"] = MATCH_KINDS.get(str(kind).lower(), kind) if kind is not None else "Exact"
    stored["repositoryId"] = entry.get("repositoryId")
    return stored


def _applies(policy: dict[str, Any], repository: Repository | None, ref_name: str | None) -> bool:
    """What /_apis/git/policy/configurations means by a policy that applies to a repository and branch."""
    for entry in policy["settings"].get("scope") or [{}]:
        entry_repo = (entry.get("repositoryId") or "").lower() or None
        if repository is not None and entry_repo not in (None, repository.id):
            continue
        if repository is None and entry_repo is not None:
            continue
        if ref_name is None or _ref_matches(entry, ref_name, repository):
            return True
    return False


def _ref_matches(entry: dict[str, Any], ref_name: str, repository: Repository | None) -> bool:
    pattern = entry.get("refName")
    kind = str(entry.get("matchKind") or "Exact").lower()
    if kind == "defaultbranch":
        return repository is not None and ref_name.lower() == repository.default_branch.lower()
    if not pattern:
        return True
    if kind == "prefix":
        return ref_name.lower().startswith(pattern.lower())
    return ref_name.lower() == pattern.lower()


def _parse_body(raw_body: bytes) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return raw_body


def _policy_validator(policy_spec: Path) -> jsonschema.protocols.Validator:
    """Validates a PolicyConfiguration: the swagger definitions, allOf merged, no unknown top-level keys."""
    definitions = json.loads(policy_spec.read_text(encoding="utf-8-sig"))["definitions"]
    schema = copy.deepcopy(definitions["PolicyConfiguration"])
    schema["properties"] = _merged_properties(definitions, "PolicyConfiguration")
    schema.pop("allOf", None)
    schema["additionalProperties"] = False
    schema["definitions"] = definitions
    checker = jsonschema.FormatChecker()
    checker.checks("int32")(lambda value: not isinstance(value, int) or -2 ** 31 <= value < 2 ** 31)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=checker)


def _merged_properties(definitions: dict[str, Any], name: str) -> dict[str, Any]:
    definition = definitions[name]
    merged: dict[str, Any] = {}
    for part in definition.get("allOf", []):
        merged.update(_merged_properties(definitions, part["$ref"].rsplit("/", 1)[1]))
    merged.update(definition.get("properties", {}))
    return merged


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms delayed-ACK stall each

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, reply_headers, body = self.server.fake.handle(  # type: ignore[attr-defined]
            self.command, self.path, headers, raw_body)
        self.send_response(status)
        for key, value in reply_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


__all__ = ["FakeAzureDevOps", "Request", "Project", "Repository", "Definition", "POLICY_TYPES",
           "BUILD", "MIN_REVIEWERS", "COMMENTS"]
