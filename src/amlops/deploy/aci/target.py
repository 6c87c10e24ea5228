"""The ACI target: a registered model served from Azure Container Instances, through Azure Resource Manager.

Azure ML SDK v2 has no ACI target (and SDK v1 is out of support), so the container group is built
directly with azure-mgmt-containerinstance (see aci_group for its shape). A deploy:

1. finds the workspace's registry, key vault and the template's user-assigned identity (aci.resources);
2. packages the registered model files and the scoring folder and uploads the package to the workspace's
   storage (aci.storage); the group reads it with its identity, so nothing in its definition expires;
3. generates a scoring key (unless auth is off) for the gateway;
4. creates or replaces the container group (one PUT, a long-running operation); when a change is one ACI
   cannot make in place (CPU, memory, ports...), it deletes the group first and creates it again. The key goes
   to the key vault (aci.keys) before a new group is made, or once ACI accepted the PUT of a replacement (a
   refused PUT leaves the running group and the vault's key as they were);
5. waits, with a deadline, until the scoring URI answers through the gateway with the key (and refuses
   without it); on failure or timeout the error carries the group's events and the containers' logs.

Redeploying the same model version with the same settings is a no-op unless forced. Secrets (the key,
its configuration) never reach a log, an exception or a repr: `_Secrets.scrub` cleans every text we show.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from amlops.deploy.aci import group as aci_group
from amlops.deploy.aci import resources as aci_resources
from amlops.deploy.aci.group import GroupSpec, check_name
from amlops.deploy.aci.keys import KeyVaultKeys
from amlops.deploy.aci.resources import AciResources
from amlops.deploy.aci.storage import DeploymentStorage, build_package
from amlops.deploy.aci.gateway import Tls
from amlops.errors import AmlopsError, NotFoundError
from amlops.workspace.entities import Deployment, ModelVersion

READINESS_TIMEOUT_S = 1200.0  # pulling the inference image and installing requirements take minutes
POLL_INTERVAL_S = 10.0
PROTECTION_CHECK_S = 60.0  # how long a request without the key may go unanswered
CRASH_RESTARTS = 3
LOG_TAIL_LINES = 40
TAG_PREFIX = "amlops-"
_BUILD_TAGS = {"BUILD_BUILDID": "build-id", "BUILD_BUILDNUMBER": "build-number",
               "BUILD_SOURCEVERSION": "source-version", "BUILD_REPOSITORY_NAME": "repository",
               "SYSTEM_TEAMPROJECT": "project", "BUILD_DEFINITIONNAME": "pipeline"}


@dataclass(frozen=True)
class AciOptions:
    """Settings beyond the task's inputs (defaults suit the sample project)."""

    image: str = aci_group.DEFAULT_IMAGE  # from mcr.microsoft.com or the workspace's registry
    gateway_image: str = ""  # "": <workspace registry>/amlops/caddy:2, imported by environment_setup
    start_command: str = aci_group.DEFAULT_START  # the image's own start, exec'd after the package fetch
    registry: str | None = None  # login server; None: the registry linked to the workspace
    identity: str | None = None  # user-assigned identity (name or id); None: <workspace>-aci
    key_vault: str | None = None  # vault URI; None: the key vault linked to the workspace
    install_requirements: bool | None = None  # None: at start with the default image, baked into any other
    tls: Tls | None = None
    tls_certificate: Path | None = None  # PEM files for tls.domain; without them Caddy asks Let's Encrypt
    tls_key: Path | None = None
    readiness_timeout_s: float = READINESS_TIMEOUT_S
    poll_interval_s: float = POLL_INTERVAL_S
    protection_check_s: float = PROTECTION_CHECK_S


class _Secrets:
    def __init__(self, *values: str | None):
        self.values = [v for v in values if v]

    def add(self, value: str | None) -> None:
        if value:
            self.values.append(value)

    def scrub(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return re.sub(r"(sig|skoid|sktid)=[^&\s\"']+", r"\1=***", text)


def deploy_aci(ws: Any, model: ModelVersion, name: str, scoring_folder: Path, entry_script: str = "score.py", *,
               cpu_cores: float = 1.0, memory_gb: float = 1.5, auth_enabled: bool = True,
               dns_name_label: str | None = None, force: bool = False, location: str | None = None,
               options: AciOptions | None = None, on_info: Callable[[str], None] = print) -> Deployment:
    """Create or replace container group `name` serving `model`; returns it Healthy, with its key."""
    options = options or AciOptions()
    label = dns_name_label or name
    _check_inputs(name, label, scoring_folder, entry_script, cpu_cores, memory_gb, options)
    client, storage = _aci_client(ws), _storage(ws)
    found = aci_resources.resolve(ws, client, options.registry, options.identity, options.key_vault)
    keys = KeyVaultKeys(ws.credential, found.key_vault, _client_kwargs(ws))
    existing = _existing_group(client, ws.resource_group, name)
    with tempfile.TemporaryDirectory(prefix="amlops-aci-") as work:
        model_dir = ws.download_model(model, Path(work) / "model")
        package = build_package(Path(model_dir), model.name, model.version, scoring_folder,
                                Path(work) / "package.tar.gz")
        spec = _spec(ws, model, name, label, location, found, storage.blob_url(package.blob_name(name)), package.size,
                     package.sha256, entry_script, cpu_cores, memory_gb, auth_enabled,
                     replace(options, install_requirements=_install(options, scoring_folder)))
        aci_group.check_images(spec)
        current = None if existing is None or force else _unchanged(existing, spec, keys, auth_enabled)
        if current is not None:
            on_info(f"container group {name} already serves {model.ref} with these settings; nothing to do "
                    "(force a redeploy to replace it)")
            return current
        storage.upload(package, name)
        on_info(f"uploaded the package of {model.ref} and {scoring_folder.name}/ ({package.size} bytes, "
                f"sha256 {package.sha256[:12]})")
    spec = _with_key(spec, auth_enabled)
    guard = _Secrets(spec.key)
    serving = existing is not None
    if not serving:
        _save_key(keys, spec, guard, serving)
    if existing is not None and _recreate(client, ws.resource_group, existing, spec, guard, on_info):
        existing = None
    on_info(f"{'replacing' if existing is not None else 'creating'} container group {name} in "
            f"{ws.resource_group} ({spec.location}): {model.ref}, {cpu_cores:g} CPU, {memory_gb:g} GB")
    poller = _begin_put(client, ws.resource_group, spec, options, guard, on_info)
    if serving:
        _save_key(keys, spec, guard, serving)
    uri = _wait_ready(client, ws.resource_group, spec, poller, options, guard, on_info)
    return Deployment(name=name, model_name=model.name, model_version=model.version, scoring_uri=uri,
                      status="Healthy", created_at=spec.tags[f"{TAG_PREFIX}created"], key=spec.key)


def _existing_group(client: Any, resource_group: str, name: str) -> Any | None:
    existing = _get_group(client, resource_group, name)
    if existing is not None and not _ours(existing):
        raise AmlopsError(f"container group {name} in {resource_group} was not made by amlops; choose another "
                          "deployment name, or delete that group first")
    return existing


def _recreate(client: Any, resource_group: str, existing: Any, spec: GroupSpec, guard: _Secrets,
              on_info: Callable[[str], None]) -> bool:
    """Delete the existing group when the new one changes what ACI cannot update in place; True if deleted."""
    reasons = aci_group.recreate_reasons(existing, aci_group.container_group(spec))
    if not reasons:
        return False
    on_info(f"recreating container group {spec.name}: {'; '.join(reasons)} (ACI sets these only when it creates a "
            f"group). Deleting it first; the DNS name label {spec.dns_name_label}, hence the scoring URI, is kept, "
            "and the deployment does not answer until the new group is ready")
    with _arm_errors(f"delete container group {spec.name}", guard):
        client.container_groups.begin_delete(resource_group, spec.name).result()
    return True


def _with_key(spec: GroupSpec, auth_enabled: bool) -> GroupSpec:
    """A new key, its fingerprint in the group's tags (what tells a later deploy whether the vault's key is the
    group's: `_unchanged`)."""
    key = secrets.token_urlsafe(32) if auth_enabled else None
    return replace(spec, key=key, tags={**spec.tags, f"{TAG_PREFIX}key-id": _key_id(key)})


def _save_key(keys: KeyVaultKeys, spec: GroupSpec, guard: _Secrets, serving: bool) -> None:
    """Keep the key in the key vault (for later no-op redeploys and for whoever may read it there). With no group
    yet, before the group is made: a vault that refuses stops the deploy before anything exists. Replacing a
    group, only once ACI has accepted the new definition: until then the running group answers to the vault's
    key, and a refused PUT (quota, a conflict, a policy) must leave it so. A save lost after the PUT heals: the
    group's key-id tag then differs from the vault's key, so the next deploy replaces the group and the key."""
    if spec.key is None:
        return
    try:
        keys.save(spec.name, spec.key)
    except AmlopsError as error:
        if not serving:
            raise
        raise AmlopsError(guard.scrub(f"container group {spec.name} was given a new scoring key, but it could not be "
                                      f"kept in the key vault: {error}. Fix that and deploy again: the next deploy "
                                      "sees that the vault's key is not the group's and replaces both")) from None


def delete_aci(ws: Any, name: str) -> Deployment:
    """Delete container group `name`, its packages and (softly) its key."""
    client = _aci_client(ws)
    group = _get_group(client, ws.resource_group, name)
    if group is None or not _ours(group):
        raise NotFoundError(f"no amlops deployment '{name}' in resource group {ws.resource_group}; "
                            "list them with `amlops deployments list`")
    with _arm_errors(f"delete container group {name}", _Secrets()):
        client.container_groups.begin_delete(ws.resource_group, name).result()
    _storage(ws).delete(name)
    KeyVaultKeys(ws.credential, aci_resources.vault_uri(ws, client), _client_kwargs(ws)).delete(name)
    return _deployment(group, "Deleted")


def get_aci(ws: Any, name: str) -> Deployment:
    group = _get_group(_aci_client(ws), ws.resource_group, name)
    if group is None or not _ours(group):
        raise NotFoundError(f"no amlops deployment '{name}' in resource group {ws.resource_group}")
    return _deployment(group, _status(group))


def list_aci(ws: Any) -> list[Deployment]:
    client = _aci_client(ws)
    with _arm_errors(f"list the container groups of {ws.resource_group}", _Secrets()):
        groups = list(client.container_groups.list_by_resource_group(ws.resource_group))
    return [_deployment(g, _status(g)) for g in groups if _ours(g)]


# -- inputs and spec ------------------------------------------------------------------------------------
def _check_inputs(name: str, label: str, scoring_folder: Path, entry_script: str, cpu_cores: float,
                  memory_gb: float, options: AciOptions) -> None:
    check_name(name, "deployment name")
    check_name(label, "DNS name label")
    if not (scoring_folder / entry_script).is_file():
        raise AmlopsError(f"entry script {scoring_folder / entry_script} not found; pass the scoring folder that "
                          "holds it (and its requirements.txt)")
    if not (cpu_cores > 0 and memory_gb > 0):
        raise AmlopsError(f"CPU cores and memory must be positive, got {cpu_cores:g} and {memory_gb:g}; "
                          "for example 1 CPU and 1.5 GB")
    if options.tls is not None and bool(options.tls_certificate) != bool(options.tls_key):
        raise AmlopsError("give both the TLS certificate and its key, or neither (Let's Encrypt)")


def _install(options: AciOptions, scoring_folder: Path) -> bool:
    """Install requirements.txt at start: by default only with the default image (others have them baked)."""
    wanted = options.image == aci_group.DEFAULT_IMAGE if options.install_requirements is None \
        else options.install_requirements
    return wanted and (scoring_folder / "requirements.txt").is_file()


def _spec(ws: Any, model: ModelVersion, name: str, label: str, location: str | None, found: AciResources,
          package_url: str, package_size: int, package_sha256: str, entry_script: str, cpu_cores: float,
          memory_gb: float, auth_enabled: bool, options: AciOptions) -> GroupSpec:
    tls_files = {}
    if options.tls is not None and options.tls_certificate:
        tls_files = {aci_group.gateway.CERT_FILE: options.tls_certificate.read_bytes(),
                     aci_group.gateway.KEY_FILE: options.tls_key.read_bytes()}
    spec = GroupSpec(name=name, location=location or ws.location(), model_name=model.name,
                     model_version=model.version, package_sha256=package_sha256, entry_script=entry_script,
                     cpu_cores=cpu_cores, memory_gb=memory_gb, dns_name_label=label, tags={}, registry=found.registry,
                     identity=found.identity, package_url=package_url, package_size=package_size, image=options.image,
                     gateway_image=options.gateway_image, start_command=options.start_command,
                     install_requirements=bool(options.install_requirements),
                     tls=options.tls,
                     tls_files=tls_files)
    return replace(spec, tags=_tags(ws, model, spec, auth_enabled))


def _settings_digest(spec: GroupSpec, auth_enabled: bool) -> str:
    settings = {"package": spec.package_sha256, "entry": spec.entry_script, "cpu": spec.cpu_cores,
                "memory": spec.memory_gb, "label": spec.dns_name_label, "location": spec.location,
                "image": spec.image, "gateway": spec.gateway, "install": spec.install_requirements,
                "start": spec.start_command, "identity": spec.identity.resource_id, "package_url": spec.package_url,
                "tls": repr(spec.tls),
                "tls_files": {k: hashlib.sha256(v).hexdigest() for k, v in spec.tls_files.items()},
                "auth": auth_enabled, "layout": 2}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def _tags(ws: Any, model: ModelVersion, spec: GroupSpec, auth_enabled: bool) -> dict[str, str]:
    tags = {"deployment": spec.name, "model": model.name, "model-version": str(model.version),
            "model-id": f"azureml:{model.name}:{model.version}", "workspace": ws.workspace_name,
            "settings": _settings_digest(spec, auth_enabled),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    run_id = model.run_id or model.tags.get("run_id")
    if run_id:
        tags["run-id"] = str(run_id)
    tags.update({tag: os.environ[var] for var, tag in _BUILD_TAGS.items() if os.environ.get(var)})
    return {f"{TAG_PREFIX}{k}": str(v)[:256] for k, v in tags.items()}


def _key_id(key: str | None) -> str:
    """A fingerprint of the key (SHA-256 of 256 random bits reveals nothing) to tell if a stored key is current."""
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else "none"


# -- clients ------------------------------------------------------------------------------------------------
def _client_kwargs(ws: Any) -> dict[str, Any]:
    return dict(getattr(ws, "client_kwargs", None) or {})


def _aci_client(ws: Any) -> Any:
    try:
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient
    except ImportError:
        raise AmlopsError("deploying to ACI needs azure-mgmt-containerinstance; install it with "
                          "pip install 'amlops[azure]'") from None
    arm = ws.cloud.arm_endpoint
    kwargs = {"base_url": arm, "credential_scopes": [arm.rstrip("/") + "/.default"], **_client_kwargs(ws)}
    return ContainerInstanceManagementClient(ws.credential, ws.subscription_id, **kwargs)


def _storage(ws: Any) -> DeploymentStorage:
    account, endpoint = ws.default_storage()
    return DeploymentStorage(ws.credential, account, endpoint, _client_kwargs(ws))


class _arm_errors:
    """Azure Resource Manager errors as one actionable line, scrubbed of secrets."""

    def __init__(self, action: str, guard: _Secrets):
        self.action, self.guard = action, guard

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        if isinstance(error, ClientAuthenticationError) and getattr(error, "status_code", None) is None:
            raise AmlopsError(f"could not sign in to Azure to {self.action}: {_first_line(error)}; check the "
                              "service connection") from None
        if not isinstance(error, HttpResponseError):
            return False
        code = getattr(getattr(error, "error", None), "code", None) or ""
        message = getattr(getattr(error, "error", None), "message", None) or _first_line(error)
        hints = {401: "check the service connection",
                 403: "give the pipeline's identity the Contributor role on the resource group "
                      "(Microsoft.ContainerInstance/containerGroups/*)"}
        hint = hints.get(error.status_code or 0, "fix the cause and deploy again")
        if code == "MissingSubscriptionRegistration":
            hint = ("register the resource provider once per subscription: az provider register --namespace "
                    "Microsoft.ContainerInstance (environment_setup/iac-pipeline.yml does it; it needs the "
                    "Microsoft.ContainerInstance/register/action permission, e.g. Contributor on the subscription)")
        raise AmlopsError(self.guard.scrub(f"Azure refused to {self.action}: HTTP {error.status_code} {code}: "
                                           f"{message}; {hint}")) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _get_group(client: Any, resource_group: str, name: str) -> Any | None:
    from azure.core.exceptions import ResourceNotFoundError

    with _arm_errors(f"read container group {name}", _Secrets()):
        try:
            return client.container_groups.get(resource_group, name)
        except ResourceNotFoundError:
            return None


def _begin_put(client: Any, resource_group: str, spec: GroupSpec, options: AciOptions, guard: _Secrets,
               on_info: Callable[[str], None]) -> Any:
    """The PUT; should ACI still refuse an in-place update (a rule recreate_reasons does not know), the group
    is deleted and created once more."""
    from azure.core.exceptions import HttpResponseError

    group = aci_group.container_group(spec)
    with _arm_errors(f"create container group {spec.name}", guard):
        try:
            return client.container_groups.begin_create_or_update(
                resource_group, spec.name, group, polling_interval=options.poll_interval_s)
        except HttpResponseError as error:
            if error.status_code != 409 or getattr(error.error, "code", None) != "InvalidContainerGroupUpdate":
                raise
        on_info(f"recreating container group {spec.name}: ACI refused to update it in place "
                "(InvalidContainerGroupUpdate). Deleting it first; the DNS name label, hence the scoring URI, is kept")
        client.container_groups.begin_delete(resource_group, spec.name).result()
        return client.container_groups.begin_create_or_update(
            resource_group, spec.name, group, polling_interval=options.poll_interval_s)


# -- state --------------------------------------------------------------------------------------------------
def _ours(group: Any) -> bool:
    return f"{TAG_PREFIX}deployment" in (group.tags or {})


def _tag(group: Any, name: str, default: str = "") -> str:
    return (group.tags or {}).get(f"{TAG_PREFIX}{name}", default)


def _scheme(group: Any) -> str:
    ports = [p.port for p in (group.ip_address.ports if group.ip_address else [])]
    return "https" if 443 in ports else "http"


def _base_uri(group: Any, spec_tls: Tls | None = None) -> str | None:
    if spec_tls is not None:
        return f"https://{spec_tls.domain}"
    fqdn = group.ip_address.fqdn if group.ip_address else None
    return f"{_scheme(group)}://{fqdn}" if fqdn else None


def _deployment(group: Any, status: str, key: str | None = None, uri: str | None = None) -> Deployment:
    base = uri or _base_uri(group) or ""
    return Deployment(name=group.name, model_name=_tag(group, "model"),
                      model_version=int(_tag(group, "model-version", "0") or 0),
                      scoring_uri=f"{base}/score" if base else "", status=status, created_at=_tag(group, "created"),
                      key=key)


def _status(group: Any) -> str:
    if group.provisioning_state == "Failed" or _problem(group):
        return "Failed"
    state = group.instance_view.state if group.instance_view else None
    return "Healthy" if group.provisioning_state == "Succeeded" and state == "Running" else (state or "Unknown")


def _unchanged(group: Any, spec: GroupSpec, keys: KeyVaultKeys, auth_enabled: bool) -> Deployment | None:
    """The running deployment, if it already serves this model version with these settings and answers."""
    if _tag(group, "model") != spec.model_name or _tag(group, "model-version") != str(spec.model_version) \
            or _tag(group, "settings") != spec.tags[f"{TAG_PREFIX}settings"] or _status(group) != "Healthy":
        return None
    key = keys.load(spec.name) if auth_enabled else None
    if _key_id(key) != _tag(group, "key-id"):
        return None
    base = _base_uri(group, spec.tls)
    if base is None or _probe(base, key, timeout_s=15) != 200:
        return None
    return _deployment(group, "Healthy", key, base)


def _problem(group: Any) -> str | None:
    """Why the group cannot become ready, or None while it still may."""
    if group.provisioning_state == "Failed":
        return "failed to provision"
    for container in group.init_containers or []:
        current = container.instance_view.current_state if container.instance_view else None
        if current and current.state == "Terminated" and current.exit_code not in (None, 0):
            return f"init container {container.name} exited with code {current.exit_code}"
    for container in group.containers or []:
        view = container.instance_view
        if view and (view.restart_count or 0) >= CRASH_RESTARTS:
            exit_code = view.previous_state.exit_code if view.previous_state else None
            return f"container {container.name} keeps exiting (code {exit_code}, {view.restart_count} restarts)"
    if group.instance_view and group.instance_view.state in ("Stopped", "Failed"):
        return f"is {group.instance_view.state}"
    return None


# -- readiness --------------------------------------------------------------------------------------------
def _wait_ready(client: Any, resource_group: str, spec: GroupSpec, poller: Any, options: AciOptions,
                guard: _Secrets, on_info: Callable[[str], None]) -> str:
    deadline = time.monotonic() + options.readiness_timeout_s
    last = ""
    while True:
        with _arm_errors(f"read container group {spec.name}", guard):
            group = client.container_groups.get(resource_group, spec.name)
        problem = _problem(group) or _lro_failure(poller)
        if problem:
            raise _failure(client, resource_group, group, problem, guard)
        state = f"{group.provisioning_state}/{group.instance_view.state if group.instance_view else '-'}"
        if state != last:
            on_info(f"container group {spec.name}: {state}")
            last = state
        base = _base_uri(group, spec.tls)
        if group.provisioning_state == "Succeeded" and base and _probe(base, spec.key) == 200:
            _check_protected(client, resource_group, group, base, spec, options, on_info)
            on_info(f"{spec.name} answers at {base}/score")
            return f"{base}/score"
        if time.monotonic() >= deadline:
            raise _failure(client, resource_group, group, f"did not answer at {base or 'its address'} within "
                           f"{options.readiness_timeout_s:g} s", guard)
        time.sleep(min(options.poll_interval_s, max(0.0, deadline - time.monotonic())))


def _lro_failure(poller: Any) -> str | None:
    from azure.core.exceptions import HttpResponseError

    if not poller.done():
        return None
    try:
        poller.result(timeout=0)
    except HttpResponseError as error:
        message = getattr(getattr(error, "error", None), "message", None) or _first_line(error)
        return f"failed to deploy: {message}"
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer (its status), never followed: the key must not travel to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None


def _probe(base: str, key: str | None, timeout_s: float = 10) -> int | None:
    """The HTTP status of the inference server's liveness route through the gateway (None: no answer)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"{base}/", headers=headers, method="GET")
    try:  # a fresh opener reads the proxy variables now (urlopen's global one keeps the first it saw)
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _check_protected(client: Any, resource_group: str, group: Any, base: str, spec: GroupSpec,
                     options: AciOptions, on_info: Callable[[str], None]) -> None:
    """Delete the group only when it is confirmed to serve without the key (a 2xx); anything else is retried
    until the deadline, and an unconfirmed check fails the deploy but keeps the (key-protected) group."""
    if spec.key is None:
        return
    deadline = time.monotonic() + options.protection_check_s
    while True:
        status = _probe(base, None)
        if status == 401:
            return
        if status is not None and 200 <= status < 300:
            client.container_groups.begin_delete(resource_group, spec.name).result()
            raise AmlopsError(f"{base} answered HTTP {status} without the key, so the gateway does not protect the "
                              f"model; container group {spec.name} was deleted. Check the gateway image "
                              f"({spec.gateway}) and deploy again")
        answer = f"HTTP {status}" if status is not None else "no answer"
        if time.monotonic() >= deadline:
            raise AmlopsError(f"could not confirm that {base} refuses requests without the key ({answer} for "
                              f"{options.protection_check_s:g} s); container group {spec.name} is kept (it answered "
                              "with the key). Check the network path to it and deploy again")
        on_info(f"{spec.name}: a request without the key got {answer}; checking again")
        time.sleep(min(options.poll_interval_s, max(0.0, deadline - time.monotonic())))


def _failure(client: Any, resource_group: str, group: Any, problem: str, guard: _Secrets) -> AmlopsError:
    lines = [f"deployment {group.name} {problem}; fix the cause shown below and deploy again (the container group "
             f"is kept for inspection: `amlops deployments delete {group.name}` removes it)"]
    lines += _events("group", group.instance_view.events if group.instance_view else None)
    for container in [*(group.init_containers or []), *(group.containers or [])]:
        lines += _container_report(client, resource_group, group.name, container)
    return AmlopsError(guard.scrub("\n".join(lines)))


def _events(owner: str, events: Any) -> list[str]:
    return [f"  {owner} event: {e.type or ''} {e.name or ''}: {e.message or ''} (x{e.count or 1})"
            for e in (events or [])[-8:]]


def _container_report(client: Any, resource_group: str, group_name: str, container: Any) -> list[str]:
    view = container.instance_view
    current = view.current_state if view else None
    state = f"{current.state} {current.detail_status or ''}".strip() if current else "no state yet"
    if current and current.exit_code is not None:
        state += f", exit code {current.exit_code}"
    lines = [f"-- {container.name}: {state}; restarts {view.restart_count if view else 0}"]
    lines += _events(container.name, view.events if view else None)
    lines += [f"  | {line}" for line in _logs(client, resource_group, group_name, container.name)]
    return lines


def _logs(client: Any, resource_group: str, group_name: str, container: str) -> list[str]:
    from azure.core.exceptions import HttpResponseError

    try:
        content = client.containers.list_logs(resource_group, group_name, container, tail=LOG_TAIL_LINES).content
    except HttpResponseError as error:
        return [f"(no logs: HTTP {error.status_code})"]
    return (content or "(empty log)").rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
