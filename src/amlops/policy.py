"""Branch policies on Azure Repos, applied idempotently with the `azure-devops` SDK.

On exactly one branch of one repository (scope: repositoryId + refs/heads/<branch>, matchKind exact):

* Build: the named pipeline must succeed, and its result expires as soon as the branch moves;
* Minimum number of reviewers: N approvals, the author's vote does not count, votes reset on new pushes;
* Comment requirements: every comment must be resolved.

All three are enabled and blocking. `apply_branch_policies` reads what exists (every page), compares after
normalising what the server changes (enum casing, `false` settings dropped, null versus empty lists),
creates what is missing, updates what differs and leaves the rest; a dry run only reports the plan.
Settings it does not manage (path filters, extra reviewer rules) are kept as they are.

The token comes from AZURE_DEVOPS_EXT_PAT (a PAT, sent as Basic) or else SYSTEM_ACCESSTOKEN (the job token,
sent as Bearer); it never appears in output or errors. Idempotent requests (GET, PUT) are retried twice on
429/5xx; a create (POST) is never retried, since a create the server did but failed to confirm would be
made twice. A build policy for another pipeline on the same branch is not ours: it is left alone.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit
from typing import Any, Callable, Mapping, TypeVar

from amlops import __version__
from amlops.errors import AmlopsError
from amlops.secret_masking import Masker, register as register_secret

BUILD_POLICY = "0609b952-1397-4640-95ec-e00a01b2c241"
REVIEWERS_POLICY = "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd"
COMMENTS_POLICY = "c6a1889d-b943-4856-b76f-9e46bb6b0df2"
POLICY_NAMES = {
    BUILD_POLICY: "Build",
    REVIEWERS_POLICY: "Minimum number of reviewers",
    COMMENTS_POLICY: "Comment requirements",
}
PAT_VARIABLE = "AZURE_DEVOPS_EXT_PAT"
JOB_TOKEN_VARIABLE = "SYSTEM_ACCESSTOKEN"

RETRY_BACKOFF_SECONDS = 0.5
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 30
DEFAULT_DEADLINE_S = 120.0  # the whole command, however the server answers (or does not)
MAX_BODY_BYTES = 8 * 1024 * 1024
_RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})  # never POST
_RETRIED_STATUSES = (429, 500, 502, 503, 504)
_CASE_INSENSITIVE = {"matchKind", "refName", "repositoryId"}
_MAX_PAGES = 1000
_AUTH_ERROR_KEYS = {"UnauthorizedRequestException", "VssUnauthorizedException"}
_PROJECT_ERROR_KEYS = {"ProjectDoesNotExistWithNameException", "ProjectDoesNotExistException"}
_REPOSITORY_ERROR_KEYS = {"GitRepositoryNotFoundException"}

_AREA_URLS: dict[str, dict[str, str]] = {}  # organisation URL -> {resource area id: its URL}

T = TypeVar("T")
Report = Callable[[str], None]


@dataclass(frozen=True)
class Branch:
    """The organisation, project, repository and full ref name (refs/heads/...) the policies are for."""
    org_url: str
    project: str
    repo: str
    ref_name: str

    @classmethod
    def parse(cls, org_url: str, project: str, repo: str, branch: str) -> "Branch":
        org = (org_url or "").strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", org):
            raise AmlopsError(f"--org must be the organization URL, like https://dev.azure.com/myorg "
                              f"(got {org_url!r})")
        for option, value in (("--project", project), ("--repo", repo), ("--branch", branch)):
            if not (value or "").strip():
                raise AmlopsError(f"{option} is empty: give the {option[2:]} name")
        ref = branch.strip()
        ref = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        return cls(org, project.strip(), repo.strip(), ref)

    @property
    def short_name(self) -> str:
        return self.ref_name.removeprefix("refs/heads/")


@dataclass(frozen=True)
class Policy:
    """A policy configuration as the server returned it."""
    id: int
    type_id: str
    type_name: str
    is_blocking: bool
    is_enabled: bool
    settings: dict[str, Any]


@dataclass(frozen=True)
class Wanted:
    """A policy this module ensures: its managed settings (with the scope) and how it reads in output."""
    type_id: str
    settings: dict[str, Any]
    summary: str
    identity: tuple[str, ...] = ()  # settings that, besides type and scope, make an existing policy ours

    @property
    def name(self) -> str:
        return POLICY_NAMES[self.type_id]


@dataclass(frozen=True)
class Step:
    """What apply does (or, in a dry run, would do) for one wanted policy."""
    action: str  # "create", "update" or "unchanged"
    wanted: Wanted
    existing: Policy | None = None
    changes: tuple[str, ...] = ()
    policy_id: int | None = None

    def line(self, dry_run: bool = False) -> str:
        verb = {"create": "created", "update": "updated", "unchanged": "unchanged"}[self.action]
        if dry_run and self.action != "unchanged":
            verb = f"would {self.action}"
        details = [self.wanted.summary]
        if self.policy_id is not None:
            details.append(f"policy {self.policy_id}")
        if self.changes:
            details.append("changes: " + ", ".join(self.changes))
        return f"{verb:<12}  {self.wanted.name}  ({'; '.join(details)})"


# ----- what we want, and how it compares ------------------------------------------------------------

def wanted_policies(repository_id: str, branch: Branch, pipeline_id: int, pipeline_name: str,
                    min_reviewers: int) -> list[Wanted]:
    scope = [{"repositoryId": repository_id, "refName": branch.ref_name, "matchKind": "exact"}]
    build = {"buildDefinitionId": pipeline_id, "queueOnSourceUpdateOnly": True, "manualQueueOnly": False,
             "displayName": pipeline_name, "validDuration": 0, "scope": scope}
    reviewers = {"minimumApproverCount": min_reviewers, "creatorVoteCounts": False, "resetOnSourcePush": True,
                 "allowDownvotes": False, "scope": scope}
    approvals = "1 approval" if min_reviewers == 1 else f"{min_reviewers} approvals"
    return [
        Wanted(BUILD_POLICY, build, f"pipeline '{pipeline_name}' #{pipeline_id} must pass; "
                                    f"expires as soon as {branch.short_name} moves", ("buildDefinitionId",)),
        Wanted(REVIEWERS_POLICY, reviewers,
               f"{approvals}, author's vote does not count, votes reset on push"),
        Wanted(COMMENTS_POLICY, {"scope": scope}, "every comment must be resolved"),
    ]


def normalised(value: Any, key: str = "") -> Any:
    """A value as comparable across what we send and what the server answers: false, null, [] and {}
    settings are absent, scope entries are unordered, and enum / id / ref values ignore case."""
    if isinstance(value, dict):
        items = {name: normalised(item, name) for name, item in value.items()}
        return {name: item for name, item in items.items() if not _unset(item)}
    if isinstance(value, list):
        return sorted((normalised(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, str) and key in _CASE_INSENSITIVE:
        return value.lower()
    return value


def comparable(value: Any, key: str = "") -> Any:
    """`normalised`, with an unset value (false, null, empty) as None, as the server would leave it."""
    value = normalised(value, key)
    return None if _unset(value) else value


def _unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (list, dict)) and not value)


def _targets(policy: Policy, repository_id: str, ref_name: str) -> bool:
    return any(comparable(entry.get("repositoryId"), "repositoryId") == repository_id.lower()
               and comparable(entry.get("refName"), "refName") == ref_name.lower()
               for entry in policy.settings.get("scope") or [] if isinstance(entry, dict))


def is_ours(wanted: Wanted, policy: Policy, repository_id: str, ref_name: str) -> bool:
    """Same type, a scope entry for this repository and branch, and the same identity settings."""
    return (policy.type_id == wanted.type_id and _targets(policy, repository_id, ref_name)
            and all(comparable(policy.settings.get(key), key) == comparable(wanted.settings[key], key)
                    for key in wanted.identity))


def differences(wanted: Wanted, policy: Policy) -> tuple[str, ...]:
    flags = (("blocking", policy.is_blocking), ("enabled", policy.is_enabled))
    changes = [f"{flag} no -> yes" for flag, value in flags if not value]
    for key, value in wanted.settings.items():
        old, new = comparable(policy.settings.get(key), key), comparable(value, key)
        if old != new:
            changes.append(f"{key} {_shown(old)} -> {_shown(new)}")
    return tuple(changes)


def plan(wanted: list[Wanted], existing: list[Policy], repository_id: str, ref_name: str) -> list[Step]:
    steps = []
    for item in wanted:
        ours = [policy for policy in existing if is_ours(item, policy, repository_id, ref_name)]
        if not ours:
            steps.append(Step("create", item))
            continue
        changes = differences(item, ours[0])
        steps.append(Step("update" if changes else "unchanged", item, ours[0], changes, ours[0].id))
    return steps


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


# ----- the commands --------------------------------------------------------------------------------

def apply_branch_policies(branch: Branch, build_pipeline: str, min_reviewers: int = 1, dry_run: bool = False,
                          report: Report = print, env: Mapping[str, str] | None = None,
                          timeout_s: float = DEFAULT_DEADLINE_S) -> list[Step]:
    """Ensures the three policies on the branch; reports one line per policy as it goes."""
    if not 1 <= min_reviewers <= 10:
        raise AmlopsError(f"--min-reviewers must be from 1 to 10 (got {min_reviewers})")
    devops = _DevOps(branch, os.environ if env is None else env, timeout_s)
    repository_id = devops.repository_id()
    pipeline_id, pipeline_name = devops.pipeline(build_pipeline)
    existing = devops.branch_policies(repository_id)
    steps = plan(wanted_policies(repository_id, branch, pipeline_id, pipeline_name, min_reviewers),
                 existing, repository_id, branch.ref_name)
    done = []
    for step in steps:
        if not dry_run:
            step = devops.carry_out(step)
        report(step.line(dry_run))
        done.append(step)
    return done


def show_branch_policies(branch: Branch, env: Mapping[str, str] | None = None,
                         timeout_s: float = DEFAULT_DEADLINE_S) -> tuple[str, list[Policy]]:
    """The repository id and every policy that applies to the branch (repository- and project-wide too)."""
    devops = _DevOps(branch, os.environ if env is None else env, timeout_s)
    repository_id = devops.repository_id()
    return repository_id, devops.branch_policies(repository_id)


def describe(policy: Policy, repository_id: str | None = None) -> str:
    """One line: type, blocking, enabled, key settings, scope and id."""
    shown = sorted(normalised(policy.settings).items())
    settings = ", ".join(f"{key}={_shown(value)}" for key, value in shown if key != "scope") or "no settings"
    flags = ("blocking" if policy.is_blocking else "optional") + ", " + (
        "enabled" if policy.is_enabled else "disabled")
    scope = "; ".join(_scope_text(entry, repository_id) for entry in policy.settings.get("scope") or [{}])
    return f"{policy.type_name}  {flags}  ({settings}; applies to {scope})  policy {policy.id}"


def _scope_text(entry: Any, repository_id: str | None) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    repository = entry.get("repositoryId")
    where = ("every repository" if not repository else
             "this repository" if repository_id and repository.lower() == repository_id.lower()
             else f"repository {repository}")
    kind = str(entry.get("matchKind") or "exact").lower()
    ref = "the default branch" if kind == "defaultbranch" else (
        f"{kind} {entry['refName']}" if entry.get("refName") else "every branch")
    return f"{where}, {ref}"


# ----- Azure DevOps through the SDK ----------------------------------------------------------------

class _DevOps:
    """The SDK clients for one organisation, and one clear line for whatever goes wrong.

    Every request has a connect and a read timeout, a bounded body and no redirects (the token must never
    reach another host); the whole command has a deadline that no server can stretch."""

    def __init__(self, branch: Branch, env: Mapping[str, str], timeout_s: float = DEFAULT_DEADLINE_S):
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
            raise AmlopsError(f"--timeout must be a positive number of seconds (got {timeout_s!r})")
        self._credentials, self.token_source, token = _credentials(env)
        self.masker = Masker([token])
        register_secret(token)
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.branch = branch
        self.last_status: int | None = None
        self._clients: dict[str, Any] = {}

    def client(self, kind: str) -> Any:
        """An SDK client built here rather than by azure.devops' Connection, whose own location lookups
        would use none of our limits (and may ask app.vssps.visualstudio.com with the token)."""
        if kind not in self._clients:
            from azure.devops.v7_1.build.build_client import BuildClient
            from azure.devops.v7_1.git.git_client import GitClient
            from azure.devops.v7_1.policy.policy_client import PolicyClient

            client_class = {"git": GitClient, "build": BuildClient, "policy": PolicyClient}[kind]
            self._clients[kind] = self._configured(client_class(self._area_url(client_class), self._credentials))
        return self._clients[kind]

    def _configured(self, client: Any) -> Any:
        client.add_user_agent(f"amlops/{__version__}")
        client.config.session_configuration_callback = _configure_session
        client.config.hooks.append(self._record_status)
        return client

    def _area_url(self, client_class: Any) -> str:
        """Where the organisation serves the client's resource area (the organisation URL on a server that
        lists none, as Azure DevOps Server does)."""
        from azure.devops.v7_1.location.location_client import LocationClient

        org = self.branch.org_url
        if org not in _AREA_URLS:  # asked once per process, as the SDK does
            location = self._configured(LocationClient(org, self._credentials))
            _AREA_URLS[org] = {area.id.lower(): area.location_url for area in location.get_resource_areas() or []}
        url = _AREA_URLS[org].get((client_class.resource_area_identifier or "").lower()) or org
        return url if urlsplit(url).netloc.lower() == urlsplit(org).netloc.lower() else org  # the token stays

    def _record_status(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.last_status = response.status_code
        _read_bounded(response, self.deadline)

    def call(self, what: str, action: Callable[[], T]) -> T:
        """The SDK call, within what is left of the command's deadline."""
        from msrest.exceptions import ClientException

        self.last_status = None
        outcome: dict[str, Any] = {}

        def attempt() -> None:
            try:
                outcome["value"] = action()
            except BaseException as error:  # noqa: B902 - handed to the caller's thread
                outcome["error"] = error

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(max(0.0, self.deadline - time.monotonic()))
        if worker.is_alive():  # the stuck request dies with the process
            raise AmlopsError(f"Azure DevOps at {self.branch.org_url} did not answer within {self.timeout_s:g} s "
                              f"(trying to {what}); check the organization URL and the network, or raise "
                              "--timeout")
        error = outcome.get("error")
        if error is None:
            return outcome["value"]
        if isinstance(error, (ClientException, ValueError)):
            raise AmlopsError(self.masker.mask(self.explain(what, error))) from None
        if isinstance(error, AmlopsError):
            raise AmlopsError(self.masker.mask(str(error))) from None
        raise error

    def repository_id(self) -> str:
        branch = self.branch
        repository = self.call(f"find repository '{branch.repo}'",
                               lambda: self.client("git").get_repository(branch.repo, branch.project))
        return str(repository.id).lower()

    def pipeline(self, name: str) -> tuple[int, str]:
        """The id and name of the build pipeline called `name` (or with that id)."""
        project = self.branch.project
        found = self.call(f"look up pipeline '{name}'",
                          lambda: self.client("build").get_definitions(project, name=name)) or []
        named = [item for item in found if (item.name or "").lower() == name.strip().lower()]
        if not named and name.strip().isdigit():
            item = self.call(f"look up pipeline #{name}",
                             lambda: self.client("build").get_definition(project, int(name)))
            named = [item] if item is not None else []
        if len(named) == 1:
            return int(named[0].id), named[0].name
        if not named:
            raise AmlopsError(f"no pipeline named '{name}' in project '{project}': check --build-pipeline "
                              "(the name shown under Pipelines, or its numeric id)")
        listed = ", ".join(f"{item.path}\\{item.name} (id {item.id})" for item in named)
        raise AmlopsError(f"{len(named)} pipelines are named '{name}' in project '{project}' ({listed}): "
                          f"pass the id instead, e.g. --build-pipeline {named[0].id}")

    def branch_policies(self, repository_id: str) -> list[Policy]:
        """Every policy that applies to the branch, reading every page."""
        branch, policies, token, seen = self.branch, {}, None, set()
        for _ in range(_MAX_PAGES):
            page = self.call(f"list the policies of {branch.ref_name}", lambda: self.client("git")
                             .get_policy_configurations(branch.project, repository_id=repository_id,
                                                        ref_name=branch.ref_name, continuation_token=token))
            for item in page.policy_configurations or []:
                if not item.is_deleted:
                    policies.setdefault(item.id, _policy(item))
            token = page.continuation_token
            if not token:
                return list(policies.values())
            if token in seen:
                raise AmlopsError(f"Azure DevOps repeated the continuation token {token!r} while listing the "
                                  f"policies of {branch.ref_name}; run the command again")
            seen.add(token)
        raise AmlopsError(f"the policies of {branch.ref_name} span more than {_MAX_PAGES} pages; giving up")

    def carry_out(self, step: Step) -> Step:
        from azure.devops.v7_1.policy.models import PolicyConfiguration, PolicyTypeRef

        if step.action == "unchanged":
            return step
        settings = dict(step.wanted.settings)
        if step.existing is not None:
            settings = {**step.existing.settings, **settings}  # keep settings we do not manage
        body = PolicyConfiguration(type=PolicyTypeRef(id=step.wanted.type_id), is_blocking=True,
                                   is_enabled=True, settings=settings)
        policies, project = self.client("policy"), self.branch.project
        if step.existing is None:
            result = self.call(f"create the {step.wanted.name} policy",
                               lambda: policies.create_policy_configuration(body, project))
        else:
            result = self.call(f"update the {step.wanted.name} policy (id {step.existing.id})",
                               lambda: policies.update_policy_configuration(body, project, step.existing.id))
        return replace(step, policy_id=result.id)

    def explain(self, what: str, error: Exception) -> str:
        """One line saying what failed and what to do; never the token."""
        branch, status = self.branch, self.last_status
        key = getattr(error, "type_key", None) or ""
        message = _one_line(getattr(error, "message", None) or str(error)).rstrip(".")
        if _is_auth_error(error, key, status):
            return (f"Azure DevOps at {branch.org_url} refused the token from {self.token_source} "
                    "(HTTP 401): use a token that is valid, not expired, for this organization, with the "
                    "scopes Code (Read & write) and Build (Read)")
        if key in _PROJECT_ERROR_KEYS:
            return (f"project '{branch.project}' was not found at {branch.org_url}: check --project "
                    f"({message})")
        if key in _REPOSITORY_ERROR_KEYS:
            return (f"repository '{branch.repo}' was not found in project '{branch.project}': check --repo "
                    f"({message})")
        if status is not None and status >= 500:
            return (f"Azure DevOps failed to {what} (HTTP {status}, a server error): {message}; "
                    "nothing after the lines above was done, run the command again later")
        if isinstance(error, ValueError):
            return f"could not {what}: {message} (is {branch.org_url} an Azure DevOps organization URL?)"
        code = f" (HTTP {status})" if status else ""
        return f"could not {what} at {branch.org_url}{code}: {message}"


def _configure_session(session: Any, global_config: Any, local_config: Any, **kwargs: Any) -> dict:
    """msrest's per-request session hook: our retry policy (never POST, server's answer kept at the end),
    connect and read timeouts, and no redirects: a redirect is an error, so the token stays with the org."""
    from urllib3 import Retry

    retry = Retry(total=2, connect=2, read=2, status=2, backoff_factor=RETRY_BACKOFF_SECONDS,
                  status_forcelist=_RETRIED_STATUSES, allowed_methods=_RETRIED_METHODS, raise_on_status=False,
                  redirect=False)
    for adapter in session.adapters.values():
        adapter.max_retries = retry
    session.max_redirects = 0
    return {**kwargs, "timeout": (CONNECT_TIMEOUT_S, READ_TIMEOUT_S), "allow_redirects": False}


def _read_bounded(response: Any, deadline: float) -> None:
    """Read a (streamed) answer now, refusing one over MAX_BODY_BYTES or still arriving at the deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise AmlopsError(f"Azure DevOps answered {int(declared):,} bytes, over the limit of {MAX_BODY_BYTES:,}; "
                          "is --org an Azure DevOps organization URL?")
    chunks, size = [], 0
    for chunk in response.raw.stream(64 * 1024, decode_content=True):
        size += len(chunk)
        if size > MAX_BODY_BYTES or time.monotonic() > deadline:
            response.close()
            raise AmlopsError(f"the answer from {response.url} is over {MAX_BODY_BYTES:,} bytes or still "
                              "arriving at the deadline; is --org an Azure DevOps organization URL?")
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what requests' .content returns from now on
    response._content_consumed = True


def _credentials(env: Mapping[str, str]) -> tuple[Any, str, str]:
    from msrest.authentication import BasicAuthentication, BasicTokenAuthentication

    pat = (env.get(PAT_VARIABLE) or "").strip()
    if pat:
        return BasicAuthentication("", pat), PAT_VARIABLE, pat
    job_token = (env.get(JOB_TOKEN_VARIABLE) or "").strip()
    if job_token.startswith("$("):
        raise AmlopsError(f"{JOB_TOKEN_VARIABLE} holds an unexpanded macro: map it into the step with "
                          f"`env: {JOB_TOKEN_VARIABLE}: $(System.AccessToken)`")
    if job_token:
        return BasicTokenAuthentication({"access_token": job_token}), JOB_TOKEN_VARIABLE, job_token
    raise AmlopsError(f"no Azure DevOps token: set {PAT_VARIABLE} to a personal access token (scopes Code: "
                      f"Read & write, Build: Read), or in a pipeline step map "
                      f"`env: {JOB_TOKEN_VARIABLE}: $(System.AccessToken)`")


def _is_auth_error(error: Exception, key: str, status: int | None) -> bool:
    from msrest.exceptions import AuthenticationError

    return isinstance(error, AuthenticationError) or status == 401 or key in _AUTH_ERROR_KEYS


def _policy(item: Any) -> Policy:
    type_id = str(getattr(item.type, "id", "") or "").lower()
    type_name = (getattr(item.type, "display_name", None)
                 or POLICY_NAMES.get(type_id, type_id or "unknown type"))
    return Policy(int(item.id), type_id, type_name, bool(item.is_blocking), bool(item.is_enabled),
                  dict(item.settings or {}))


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    text = text.removeprefix("Error occurred in request., ")
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["Branch", "Policy", "Wanted", "Step", "apply_branch_policies", "show_branch_policies", "describe",
           "wanted_policies", "plan", "normalised", "comparable", "is_ours", "differences", "BUILD_POLICY",
           "REVIEWERS_POLICY", "COMMENTS_POLICY", "POLICY_NAMES", "PAT_VARIABLE", "JOB_TOKEN_VARIABLE"]
