"""The inference container's command under the inference image's conditions, as far as this machine allows.

What the image gives the command (Azure/azureml-assets, assets/inference/environments/
minimal-ubuntu22.04-py39-cpu-inference/context/Dockerfile, read for this test):

* `USER dockeruser`: a non-root user; here uid/gid 65534 (setpriv), which owns nothing on the machine;
* `ENV PATH $AZUREML_CONDA_ENVIRONMENT_PATH/bin:$PATH` with the conda environment /azureml-envs/minimal, whose
  `python` is Python 3.9 (the image's name): the command's bare `python` must come from PATH, and the script
  must be Python 3.9 (checked with the parser's 3.9 grammar; the interpreter here is Debian's python3);
* `ENV LD_LIBRARY_PATH $AZUREML_CONDA_ENVIRONMENT_PATH/lib:...`: system libraries such as libgomp (LightGBM)
  come from the conda environment, not from the command: the command itself needs none;
* `CMD ["runsvdir", "/var/runit"]`: the start the command execs after the fetch (AMLOPS_START).

Read-only everything but the volume: the command runs in its own mount namespace (unshare) where / is
remounted read-only and only the emptyDir stand-in (world-writable, as an emptyDir is) is a writable bind
mount; it reaches the identity endpoint and Azurite over loopback. Not reproduced: the image's own files and
libraries, runit and the real inference server (their environment lives under /root, which the non-root user
cannot read); the real server runs behind the same command in test_aci_contract's slow test.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from aci_support import IDENTITY_CLIENT_ID, IDENTITY_PRINCIPAL_ID, SCORING, FakeCredential, IdentityEndpoint, \
    free_port, group_spec, require, wait_listening
from amlops.deploy.aci.group import FETCH_SCRIPT, fetch_environment, server_environment
from amlops.deploy.aci.storage import DeploymentStorage, build_package

pytestmark = pytest.mark.slow
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def test_the_fetch_script_is_python_3_9():
    ast.parse(FETCH_SCRIPT, feature_version=(3, 9))


@pytest.fixture
def image_root():
    """A world-readable folder outside /root for what the non-root user needs: the conda env's bin (python),
    the CA certificate, the upstream script, and the emptyDir volume."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv") or \
            not Path(SYSTEM_PYTHON).exists():
        require(None, "root, unshare, setpriv and /usr/bin/python3 (to run the command as another user)")
    probe = subprocess.run(["unshare", "--mount", "--", "sh", "-c", "mount -o remount,bind,ro /"],
                           capture_output=True)
    if probe.returncode != 0:
        require(None, "mount namespaces (unshare --mount) to make the file system read-only")
    root = Path(tempfile.mkdtemp(prefix="amlops-image-", dir="/tmp"))
    root.chmod(0o755)
    (root / "azureml-envs" / "minimal" / "bin").mkdir(parents=True)
    (root / "azureml-envs" / "minimal" / "bin" / "python").symlink_to(SYSTEM_PYTHON)
    volume = root / "var-azureml-app"
    volume.mkdir()
    volume.chmod(0o777)
    for path in root.rglob("*"):
        if path.is_dir() and path != volume:
            path.chmod(0o755)
    yield root
    shutil.rmtree(root)


def _run_as_image_user(command: list[str], env: dict[str, str], volume: Path) -> subprocess.Popen:
    shell = ('mount --bind "$AMLOPS_VOLUME" "$AMLOPS_VOLUME" && mount -o remount,bind,ro / && '
             f'exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- "$@"')
    return subprocess.Popen(["unshare", "--mount", "--", "/bin/sh", "-c", shell, "sh", *command],
                            env={**env, "AMLOPS_VOLUME": str(volume)}, cwd=volume, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _environment(image_root: Path, spec, endpoint: IdentityEndpoint, cert: Path, start: str, path: str):
    volume = image_root / "var-azureml-app"
    env = {k: v.replace("/var/azureml-app", str(volume))
           for k, v in {**server_environment(spec), **fetch_environment(spec)}.items()}
    return {**env, "AMLOPS_IDENTITY_ENDPOINT": endpoint.url, "AMLOPS_START": start, "AMLOPS_TOKEN_ATTEMPTS": "1",
            "PATH": path, "HOME": "/nonexistent", "SSL_CERT_FILE": str(cert), "PYTHONDONTWRITEBYTECODE": "1",
            "no_proxy": "127.0.0.1", "LANG": "C.UTF-8"}


@pytest.fixture
def uploaded(azurite, tls_pair, model, tmp_path):
    storage = DeploymentStorage(FakeCredential(), "devstoreaccount1", azurite, {"connection_verify": str(tls_pair[0])})
    package = build_package(model.path, model.name, model.version, SCORING, tmp_path / "package.tar.gz")
    storage.upload(package, "conditions")
    return group_spec(model_name=model.name, model_version=model.version, package_sha256=package.sha256,
                      package_size=package.size, package_url=storage.blob_url(package.blob_name("conditions")))


@pytest.fixture
def endpoint():
    made = IdentityEndpoint()
    made.client_ids = {IDENTITY_CLIENT_ID: IDENTITY_PRINCIPAL_ID}
    yield made
    made.stop()


def test_the_command_fetches_and_starts_as_the_images_user_on_a_read_only_system(
        image_root, uploaded, endpoint, tls_pair):
    cert = image_root / "ca.pem"
    shutil.copy(tls_pair[0], cert)
    cert.chmod(0o644)
    upstream = image_root / "fake_inference.py"
    shutil.copy(Path(__file__).with_name("fake_inference.py"), upstream)
    upstream.chmod(0o644)
    port = free_port()
    path = f"{image_root}/azureml-envs/minimal/bin:/usr/local/bin:/usr/bin:/bin"
    env = _environment(image_root, uploaded, endpoint, cert, f"python {upstream} {port}", path)
    volume = image_root / "var-azureml-app"
    server = next(c for c in _group_containers(uploaded) if c.name == "inference")
    process = _run_as_image_user(list(server.command), env, volume)
    try:
        try:
            wait_listening(process, port, 60)
        except RuntimeError as error:
            raise AssertionError(f"the command {error}: {process.communicate()[0]}") from None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            assert answer.status == 200, "the server found the model and score.py the fetch unpacked"
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "amlops-fetch: unpacked" in output, output
    assert (volume / "azureml-models" / "driver" / "3" / "model.txt").is_file()
    owners = {p.stat().st_uid for p in volume.rglob("*")}
    assert owners == {NOBODY}, "everything in the volume was written by the image's (non-root) user"
    assert [p.name for p in image_root.iterdir() if p.stat().st_uid == NOBODY] == [], "nothing outside the volume"


def test_the_same_command_fails_clearly_without_python_on_path_or_a_writable_volume(
        image_root, uploaded, endpoint, tls_pair):
    """The conditions bite: without the image's env on PATH there is no `python`; with the volume read-only
    the fetch cannot unpack."""
    cert = image_root / "ca.pem"
    shutil.copy(tls_pair[0], cert)
    cert.chmod(0o644)
    volume = image_root / "var-azureml-app"
    server = next(c for c in _group_containers(uploaded) if c.name == "inference")
    no_python = _run_as_image_user(list(server.command), _environment(image_root, uploaded, endpoint, cert, "true",
                                                                      "/usr/local/bin:/usr/bin:/bin"), volume)
    assert no_python.wait(timeout=30) != 0
    volume.chmod(0o755)  # root's, as an image folder would be: the user cannot write it
    path = f"{image_root}/azureml-envs/minimal/bin:/usr/bin:/bin"
    read_only = _run_as_image_user(list(server.command), _environment(image_root, uploaded, endpoint, cert, "true",
                                                                      path), volume)
    output = read_only.communicate(timeout=60)[0]
    assert read_only.returncode != 0 and "Permission denied" in output, output


def _group_containers(spec):
    from amlops.deploy.aci.group import container_group

    return container_group(spec).containers
