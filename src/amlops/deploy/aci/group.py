"""The container group an ACI deployment runs, as azure-mgmt-containerinstance models.

    init container  fetch-package  the inference image's Python downloads the package with the SAS URL (a
                                   secure value), checks its SHA-256 and unpacks it into /var/azureml-app
    container       inference      the Azure ML inference image, unchanged: its own entrypoint serves
                                   AZUREML_ENTRY_SCRIPT from AML_APP_ROOT on port 5001 (not exposed)
    container       gateway        Caddy on port 80 (443 with TLS): checks the key, proxies to localhost:5001;
                                   its configuration is a secret volume

The volume `app` (emptyDir) carries the unpacked package from the init container to the server.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from amlops.deploy.aci import gateway
from amlops.errors import AmlopsError

DEFAULT_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"
GATEWAY_IMAGE = "docker.io/library/caddy:2"
APP_ROOT = "/var/azureml-app"
GATEWAY_CONFIG_DIR = "/etc/amlops-gateway"
GATEWAY_CPU = 0.25
GATEWAY_MEMORY_GB = 0.25
DNS_SCOPE = "ResourceGroupReuse"  # the FQDN gets a hash only this resource group can claim again
INIT, SERVER, GATEWAY = "fetch-package", "inference", "gateway"
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

# Runs as `python -c` in the init container. It never prints the URL (it carries the SAS).
INIT_SCRIPT = r'''
import hashlib, os, sys, tarfile, tempfile, urllib.request
url = os.environ.pop("AMLOPS_PACKAGE_URL")
expected = os.environ["AMLOPS_PACKAGE_SHA256"]
root = os.environ.get("AMLOPS_APP_ROOT", "/var/azureml-app")
def fail(message):
    print("amlops-init: " + message, flush=True)
    sys.exit(1)
with tempfile.TemporaryFile() as package:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                package.write(chunk)
    except Exception as error:
        detail = str(error)
        if url.split("?")[0] in detail or "sig=" in detail:
            detail = "(details withheld: they contain the package URL)"
        fail("could not download the package: %s %s" % (type(error).__name__, detail))
    if digest.hexdigest() != expected:
        fail("the package's SHA-256 is %s, expected %s" % (digest.hexdigest(), expected))
    package.seek(0)
    with tarfile.open(fileobj=package, mode="r:gz") as tar:
        names = tar.getnames()
        if any(n.startswith("/") or ".." in n.split("/") for n in names):
            fail("the package holds a path outside the app folder")
        tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
print("amlops-init: unpacked %d files (sha256 %s) into %s" % (len(names), expected[:12], root), flush=True)
'''


@dataclass(frozen=True)
class GroupSpec:
    """Everything the group is made from. Secrets are excluded from repr."""

    name: str
    location: str
    model_name: str
    model_version: int
    package_sha256: str
    entry_script: str
    cpu_cores: float
    memory_gb: float
    dns_name_label: str
    tags: dict[str, str]
    image: str = DEFAULT_IMAGE
    gateway_image: str = GATEWAY_IMAGE
    install_requirements: bool = True
    tls: gateway.Tls | None = None
    package_url: str = field(default="", repr=False)
    key: str | None = field(default=None, repr=False)
    tls_files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def model_dir(self) -> str:
        return f"{APP_ROOT}/azureml-models/{self.model_name}/{self.model_version}"

    @property
    def public_ports(self) -> list[int]:
        return [80, 443] if self.tls else [80]


def check_name(name: str, what: str) -> None:
    if not NAME.match(name) or "--" in name:
        raise AmlopsError(f"{what} '{name}' is not valid for Azure Container Instances; use 1-63 lowercase "
                          "letters, digits and single hyphens, starting and ending with a letter or digit")


def container_group(spec: GroupSpec) -> Any:
    """The azure-mgmt-containerinstance ContainerGroup for `spec`."""
    from azure.mgmt.containerinstance import models

    return models.ContainerGroup(
        location=spec.location, tags=spec.tags, os_type="Linux", restart_policy="Always",
        init_containers=[_init_container(spec, models)],
        containers=[_server(spec, models), _gateway(spec, models)],
        volumes=[models.Volume(name="app", empty_dir={}),
                 models.Volume(name="gateway-config", secret=_gateway_files(spec))],
        ip_address=models.IpAddress(
            type="Public", ports=[models.Port(port=p, protocol="TCP") for p in spec.public_ports],
            dns_name_label=spec.dns_name_label, auto_generated_domain_name_label_scope=DNS_SCOPE))


def _init_container(spec: GroupSpec, models: Any) -> Any:
    env = [models.EnvironmentVariable(name="AMLOPS_PACKAGE_URL", secure_value=spec.package_url),
           models.EnvironmentVariable(name="AMLOPS_PACKAGE_SHA256", value=spec.package_sha256),
           models.EnvironmentVariable(name="AMLOPS_APP_ROOT", value=APP_ROOT)]
    return models.InitContainerDefinition(
        name=INIT, image=spec.image, command=["python", "-c", INIT_SCRIPT], environment_variables=env,
        volume_mounts=[models.VolumeMount(name="app", mount_path=APP_ROOT)])


def server_environment(spec: GroupSpec) -> dict[str, str]:
    """The Azure ML inference image contract."""
    env = {"AML_APP_ROOT": APP_ROOT, "AZUREML_ENTRY_SCRIPT": spec.entry_script, "AZUREML_MODEL_DIR": spec.model_dir}
    if spec.install_requirements:
        env["AZUREML_EXTRA_REQUIREMENTS_TXT"] = "requirements.txt"
    return env


def _server(spec: GroupSpec, models: Any) -> Any:
    env = [models.EnvironmentVariable(name=k, value=v) for k, v in server_environment(spec).items()]
    return models.Container(
        name=SERVER, image=spec.image, environment_variables=env,
        resources=models.ResourceRequirements(
            requests=models.ResourceRequests(cpu=spec.cpu_cores, memory_in_gb=spec.memory_gb)),
        volume_mounts=[models.VolumeMount(name="app", mount_path=APP_ROOT)])


def _gateway(spec: GroupSpec, models: Any) -> Any:
    return models.Container(
        name=GATEWAY, image=spec.gateway_image,
        command=["caddy", "run", "--config", f"{GATEWAY_CONFIG_DIR}/{gateway.CONFIG_FILE}"],
        ports=[models.ContainerPort(port=p, protocol="TCP") for p in spec.public_ports],
        resources=models.ResourceRequirements(
            requests=models.ResourceRequests(cpu=GATEWAY_CPU, memory_in_gb=GATEWAY_MEMORY_GB)),
        volume_mounts=[models.VolumeMount(name="gateway-config", mount_path=GATEWAY_CONFIG_DIR, read_only=True)])


def gateway_config_text(spec: GroupSpec, **addresses: Any) -> str:
    """The gateway's configuration for this group (`addresses`: upstream/ports/host overrides for tests)."""
    tls = spec.tls
    if tls is not None and spec.tls_files:
        tls = gateway.Tls(tls.domain, f"{GATEWAY_CONFIG_DIR}/{gateway.CERT_FILE}",
                          f"{GATEWAY_CONFIG_DIR}/{gateway.KEY_FILE}", tls.email)
    return gateway.caddy_config_text(spec.key, tls=tls, **addresses)


def _gateway_files(spec: GroupSpec) -> dict[str, str]:
    files = {gateway.CONFIG_FILE: gateway_config_text(spec).encode(), **spec.tls_files}
    return {name: base64.b64encode(data).decode() for name, data in files.items()}


def recreate_reasons(existing: Any, new: Any) -> list[str]:
    """What `new` changes of the `existing` group that ACI only sets when it creates a group (OS type, restart
    policy, CPU, memory, ports, DNS label: a PUT changing them gets 409 InvalidContainerGroupUpdate)."""
    reasons = []
    for what, old_value, new_value in (("OS type", existing.os_type, new.os_type),
                                       ("restart policy", existing.restart_policy or "Always", new.restart_policy),
                                       ("public ports", _ports(existing.ip_address), _ports(new.ip_address)),
                                       ("DNS name label", _label(existing.ip_address), _label(new.ip_address))):
        if old_value != new_value:
            reasons.append(f"{what} {old_value} -> {new_value}")
    before = {c.name: c for c in existing.containers or []}
    for container in new.containers:
        old = before.get(container.name)
        if old is None:
            continue
        old_requests, new_requests = old.resources.requests, container.resources.requests
        if old_requests.cpu != new_requests.cpu:
            reasons.append(f"{container.name} CPU {old_requests.cpu:g} -> {new_requests.cpu:g}")
        if old_requests.memory_in_gb != new_requests.memory_in_gb:
            reasons.append(f"{container.name} memory {old_requests.memory_in_gb:g} -> {new_requests.memory_in_gb:g} GB")
        if _ports(old) != _ports(container):
            reasons.append(f"{container.name} ports {_ports(old)} -> {_ports(container)}")
    return reasons


def _ports(owner: Any) -> list[int]:
    return sorted(p.port for p in (owner.ports or [])) if owner is not None else []


def _label(ip_address: Any) -> str | None:
    return ip_address.dns_name_label if ip_address is not None else None
