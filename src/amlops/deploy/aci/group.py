"""The container group an ACI deployment runs, as azure-mgmt-containerinstance models.

    identity        the user-assigned identity environment_setup/azuredeploy.json creates for ACI: it pulls
                    images from the workspace's registry (AcrPull) and reads the packages (Storage Blob Data
                    Reader on the container amlops-deployments); nothing in the group expires
    container       inference      the Azure ML inference image: its command first fetches the package with a
                                   token of that identity (ACI's managed identity endpoint), checks its SHA-256,
                                   unpacks it into /var/azureml-app, then execs the image's own start
                                   (`runsvdir /var/runit`), which serves AZUREML_ENTRY_SCRIPT on port 5001
    container       gateway        Caddy from the workspace's registry on port 80 (443 with TLS): checks the
                                   key, proxies to localhost:5001; its configuration is a secret volume

The fetch runs in the inference container, not in an init container, because ACI gives init containers no
managed identity (https://learn.microsoft.com/azure/container-instances/container-instances-init-container,
"Things to know"). It runs again whenever the container (re)starts, days later too: a token is asked for
each time, so no credential in the definition can expire. Every image comes from mcr.microsoft.com or the
workspace's registry: anonymous Docker Hub pulls fail under its rate limit (Azure/azure-cli#29300).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from amlops import names
from amlops.deploy.aci import gateway
from amlops.errors import AmlopsError

DEFAULT_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"
# CMD of the inference image (Azure/azureml-assets, assets/inference/environments/
# minimal-ubuntu22.04-py39-cpu-inference/context/Dockerfile): runit starts the inference server.
DEFAULT_START = "runsvdir /var/runit"
MCR = "mcr.microsoft.com"
# Imported into the workspace's registry by environment_setup/iac-pipeline.yml (az acr import).
GATEWAY_REPOSITORY = "amlops/caddy:2"
APP_ROOT = "/var/azureml-app"
GATEWAY_CONFIG_DIR = "/etc/amlops-gateway"
GATEWAY_CPU = 0.25
GATEWAY_MEMORY_GB = 0.25
DNS_SCOPE = "ResourceGroupReuse"  # the FQDN gets a hash only this resource group can claim again
SERVER, GATEWAY = "inference", "gateway"
STORAGE_RESOURCE = "https://storage.azure.com/"

# Runs as `python -c` in the inference container, as the image's user, before the image's own start. The
# identity endpoint is ACI's managed identity endpoint (the IMDS address); AMLOPS_IDENTITY_ENDPOINT exists for
# tests on one machine. It prints no token.
FETCH_SCRIPT = r'''
import hashlib, json, os, shlex, sys, tarfile, tempfile, time, urllib.error, urllib.parse, urllib.request
url = os.environ["AMLOPS_PACKAGE_URL"]
expected = os.environ["AMLOPS_PACKAGE_SHA256"]
size = int(os.environ["AMLOPS_PACKAGE_SIZE"])
root = os.environ.get("AMLOPS_APP_ROOT", "/var/azureml-app")
endpoint = os.environ.get("AMLOPS_IDENTITY_ENDPOINT", "http://169.254.169.254/metadata/identity/oauth2/token")
def fail(message):
    print("amlops-fetch: " + message, flush=True)
    sys.exit(1)
def token():
    query = urllib.parse.urlencode({"api-version": "2018-02-01", "resource": os.environ["AMLOPS_TOKEN_RESOURCE"],
                                    "client_id": os.environ["AMLOPS_IDENTITY_CLIENT_ID"]})
    request = urllib.request.Request(endpoint + "?" + query, headers={"Metadata": "true"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    problem = ""
    for attempt in range(int(os.environ.get("AMLOPS_TOKEN_ATTEMPTS", "6"))):
        try:
            with direct.open(request, timeout=30) as response:
                return json.loads(response.read(1 << 20))["access_token"]
        except urllib.error.HTTPError as error:
            problem = "HTTP %d %s" % (error.code, error.read(2000).decode("utf-8", "replace"))
        except Exception as error:
            problem = "%s %s" % (type(error).__name__, error)
        time.sleep(min(2 ** attempt, 10))
    fail("could not get a token of the deployment's managed identity: " + problem)
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token(), "x-ms-version": "2021-08-06"})
with tempfile.TemporaryFile(dir=root) as package:  # the volume: the only writable place
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                received += len(chunk)
                if received > size:
                    fail("the package is larger than the %d bytes expected" % size)
                digest.update(chunk)
                package.write(chunk)
    except urllib.error.HTTPError as error:
        fail("could not download the package: HTTP %d %s (the identity needs Storage Blob Data Reader on it)"
             % (error.code, error.headers.get("x-ms-error-code") or error.reason))
    except OSError as error:
        fail("could not download the package: %s %s" % (type(error).__name__, error))
    if digest.hexdigest() != expected:
        fail("the package's SHA-256 is %s, expected %s" % (digest.hexdigest(), expected))
    package.seek(0)
    with tarfile.open(fileobj=package, mode="r:gz") as tar:
        names = tar.getnames()
        if any(n.startswith("/") or ".." in n.split("/") for n in names):
            fail("the package holds a path outside the app folder")
        tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
print("amlops-fetch: unpacked %d files (sha256 %s) into %s" % (len(names), expected[:12], root), flush=True)
start = shlex.split(os.environ["AMLOPS_START"])
os.execvp(start[0], start)
'''


@dataclass(frozen=True)
class Identity:
    """The user-assigned managed identity the group runs with."""

    resource_id: str
    client_id: str


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
    registry: str  # login server of the workspace's container registry
    identity: Identity
    package_url: str  # the blob, without any SAS: the identity's token opens it
    package_size: int
    image: str = DEFAULT_IMAGE
    gateway_image: str = ""  # "": the Caddy image imported into the workspace's registry
    start_command: str = DEFAULT_START
    install_requirements: bool = True
    tls: gateway.Tls | None = None
    key: str | None = field(default=None, repr=False)
    tls_files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def model_dir(self) -> str:
        return f"{APP_ROOT}/azureml-models/{self.model_name}/{self.model_version}"

    @property
    def gateway(self) -> str:
        return self.gateway_image or f"{self.registry}/{GATEWAY_REPOSITORY}"

    @property
    def images(self) -> list[str]:
        return [self.image, self.gateway]

    @property
    def public_ports(self) -> list[int]:
        return [80, 443] if self.tls else [80]


def check_name(name: str, what: str) -> None:
    if not names.DEPLOYMENT.matches(name):
        raise AmlopsError(f"{what} '{name}' is not valid for Azure Container Instances; use 1-63 lowercase "
                          "letters, digits and single hyphens, starting and ending with a letter or digit")


def image_registry(image: str) -> str:
    """The registry host of an image reference (Docker Hub when it names none)."""
    first = image.split("/", 1)[0]
    named = "/" in image and ("." in first or ":" in first or first == "localhost")
    return first.lower() if named else "docker.io"


def check_images(spec: GroupSpec) -> None:
    for image in spec.images:
        if image_registry(image) not in (MCR, spec.registry.lower()):
            raise AmlopsError(f"image {image} is not from {MCR} or the workspace's registry {spec.registry}; "
                              f"import it there (az acr import --name <registry> --source {image}) and use "
                              f"{spec.registry}/<repository>:<tag>")


def container_group(spec: GroupSpec) -> Any:
    """The azure-mgmt-containerinstance ContainerGroup for `spec`."""
    from azure.mgmt.containerinstance import models

    identities = {spec.identity.resource_id: models.UserAssignedIdentities()}
    return models.ContainerGroup(
        location=spec.location, tags=spec.tags, os_type="Linux", restart_policy="Always",
        identity=models.ContainerGroupIdentity(type="UserAssigned", user_assigned_identities=identities),
        image_registry_credentials=[models.ImageRegistryCredential(server=spec.registry,
                                                                   identity=spec.identity.resource_id)],
        containers=[_server(spec, models), _gateway(spec, models)],
        volumes=[models.Volume(name="app", empty_dir={}),
                 models.Volume(name="gateway-config", secret=_gateway_files(spec))],
        ip_address=models.IpAddress(
            type="Public", ports=[models.Port(port=p, protocol="TCP") for p in spec.public_ports],
            dns_name_label=spec.dns_name_label, auto_generated_domain_name_label_scope=DNS_SCOPE))


def server_environment(spec: GroupSpec) -> dict[str, str]:
    """The Azure ML inference image contract."""
    env = {"AML_APP_ROOT": APP_ROOT, "AZUREML_ENTRY_SCRIPT": spec.entry_script, "AZUREML_MODEL_DIR": spec.model_dir}
    if spec.install_requirements:
        env["AZUREML_EXTRA_REQUIREMENTS_TXT"] = "requirements.txt"
    return env


def fetch_environment(spec: GroupSpec) -> dict[str, str]:
    """What the fetch before the server's start reads (no secret: the identity's token is asked for at start)."""
    return {"AMLOPS_PACKAGE_URL": spec.package_url, "AMLOPS_PACKAGE_SHA256": spec.package_sha256,
            "AMLOPS_PACKAGE_SIZE": str(spec.package_size), "AMLOPS_APP_ROOT": APP_ROOT,
            "AMLOPS_IDENTITY_CLIENT_ID": spec.identity.client_id, "AMLOPS_TOKEN_RESOURCE": STORAGE_RESOURCE,
            "AMLOPS_START": spec.start_command}


def _server(spec: GroupSpec, models: Any) -> Any:
    env = [models.EnvironmentVariable(name=k, value=v)
           for k, v in {**server_environment(spec), **fetch_environment(spec)}.items()]
    return models.Container(
        name=SERVER, image=spec.image, command=["python", "-c", FETCH_SCRIPT], environment_variables=env,
        resources=models.ResourceRequirements(
            requests=models.ResourceRequests(cpu=spec.cpu_cores, memory_in_gb=spec.memory_gb)),
        volume_mounts=[models.VolumeMount(name="app", mount_path=APP_ROOT)])


def _gateway(spec: GroupSpec, models: Any) -> Any:
    return models.Container(
        name=GATEWAY, image=spec.gateway,
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
