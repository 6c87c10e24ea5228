"""extension/launcher.js on self-hosted agents: the agent's proxy and CA, offline installs, a wheelhouse, two
builds side by side. Real node runs the real launcher, which installs a stand-in amlops (depending on
`amlops-dep`, only on the test's package index) with real pip or uv from a loopback index."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from devops_agent import Agent
from package_index import PackageIndex, Proxy, TestCA, closed_port, make_wheel
from test_devops_launcher import SMOKE, environment_of, environments, stage_fake

pytestmark = pytest.mark.slow

INDEX_HOST = "index.amlops.test"  # resolvable only by the proxy
PASSWORD = "p@ss;w0rd%Z/+"  # every character that changes under URL encoding


@pytest.fixture
def index_files(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    make_wheel(folder / "amlops-dep", "amlops-dep", "1.0", {"amlops_dep/__init__.py": ""})
    return folder


@pytest.fixture
def task(tmp_path: Path) -> Path:
    return stage_fake(tmp_path / "staged" / "AmlSmokeTest", requires=("amlops-dep",))


@pytest.fixture
def agent(tmp_path: Path, sources: Path) -> Agent:
    return Agent(work=tmp_path / "work", tools=tmp_path / "tools", sources=sources)


def isolated(tmp_path: Path, installer: str, **variables: str) -> dict[str, str]:
    """A host with no pip configuration and empty installer caches (the machine's pip.conf set aside)."""
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
           "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "AMLOPS_USE_UV": "true" if installer == "uv" else "false"}
    env.update(variables)
    return env


def run(agent: Agent, task: Path, env: dict[str, str], **kwargs):
    unset = ("PIP_", "UV_", "SSL_CERT", "REQUESTS_CA", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    return agent.run(task, SMOKE, extra=env, unset=unset, **kwargs)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_install_goes_through_the_agents_proxy_and_trusts_its_ca(
        tmp_path, agent, task, index_files, installer) -> None:
    ca = TestCA(tmp_path / "pki", (INDEX_HOST,))
    index = PackageIndex(index_files, ca=ca).start()
    proxy = Proxy(lambda host: index.port if host == INDEX_HOST else None, credentials=("builder", PASSWORD)).start()
    try:
        result = run(agent, task, isolated(
            tmp_path, installer, PIP_INDEX_URL=index.url(INDEX_HOST, 443),
            AGENT_PROXYURL=f"http://127.0.0.1:{proxy.port}", AGENT_PROXYUSERNAME="builder",
            SECRET_AGENT_PROXYPASSWORD=PASSWORD, AGENT_CAINFO=str(ca.cert),
            AGENT_PROXYBYPASSLIST='["ignored\\\\.example"]'))
    finally:
        proxy.stop()
        index.stop()
    assert result.result == "Succeeded", result.text()
    assert f"{installer})" in result.stdout, result.text()
    assert f"CONNECT {INDEX_HOST}:443" in proxy.targets and not proxy.refused
    assert any(path.endswith(".whl") for path in index.requests)
    assert "proxy: set, ca: " in result.stdout  # the task itself gets the proxy and the CA bundle
    for form in (PASSWORD, "p%40ss%3Bw0rd%25Z%2F%2B"):
        assert form in result.secrets and not result.leaks(form)


def test_without_the_agents_ca_the_failure_names_the_certificate(tmp_path, agent, task, index_files) -> None:
    ca = TestCA(tmp_path / "pki", ("127.0.0.1",))
    index = PackageIndex(index_files, ca=ca).start()
    try:
        result = run(agent, task, isolated(tmp_path, "pip", PIP_INDEX_URL=index.url(), PIP_RETRIES="1"))
    finally:
        index.stop()
    assert result.result == "Failed", result.text()
    assert "CERTIFICATE_VERIFY_FAILED" in result.message and "Agent.CAInfo" in result.message


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_offline_install_names_its_cause_and_uploads_the_log(tmp_path, agent, task, installer) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/simple/"
    result = run(agent, task, isolated(tmp_path, installer, PIP_INDEX_URL=dead, PIP_RETRIES="1"))
    assert result.result == "Failed", result.text()
    assert "Connection refused" in result.message, result.message
    assert "ResolutionImpossible" not in result.message and "To fix this" not in result.message
    [log] = result.uploads
    assert "Connection refused" in Path(log).read_text()
    assert not (environment_of(agent, task) / "amlops-ready.json").exists()
    assert not Path(f"{environment_of(agent, task)}.lock").exists()


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_air_gapped_agent_installs_from_a_wheelhouse(tmp_path, agent, task, index_files, installer) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    for wheel in index_files.rglob("*.whl"):
        (house / wheel.name).write_bytes(wheel.read_bytes())
    dead = f"http://127.0.0.1:{closed_port()}/simple/"  # any index use would fail
    result = run(agent, task, isolated(tmp_path, installer, PIP_INDEX_URL=dead, AMLOPS_WHEELHOUSE=str(house)))
    assert result.result == "Succeeded", result.text()
    assert f"wheelhouse {house}" in result.stdout


def test_a_wheelhouse_that_is_not_a_folder_is_named(tmp_path, agent, task) -> None:
    result = run(agent, task, isolated(tmp_path, "pip", AMLOPS_WHEELHOUSE=str(tmp_path / "missing")))
    assert result.result == "Failed"
    assert "AMLOPS_WHEELHOUSE" in result.message and "missing" in result.message


def test_uv_is_not_used_where_pip_is_configured_by_a_file_it_cannot_read(tmp_path, agent, task, index_files) -> None:
    index = PackageIndex(index_files).start()
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {index.url()}\n")
    try:
        result = run(agent, task, isolated(tmp_path, "uv", PIP_CONFIG_FILE=str(config)))
    finally:
        index.stop()
    assert result.result == "Succeeded", result.text()
    assert "pip)" in result.stdout


def test_uv_failing_falls_back_to_pip(tmp_path, agent, task, index_files) -> None:
    index = PackageIndex(index_files).start()
    fake_uv = tmp_path / "bin" / "uv"
    fake_uv.parent.mkdir()
    fake_uv.write_text("#!/bin/sh\necho 'error: uv is broken here' >&2\nexit 2\n")
    fake_uv.chmod(0o755)
    path = os.pathsep.join([str(fake_uv.parent), os.environ["PATH"]])
    try:
        result = agent.run(task, SMOKE, extra=isolated(tmp_path, "uv", PIP_INDEX_URL=index.url()),
                           unset=("PIP_", "UV_"), path=path)
    finally:
        index.stop()
    assert result.result == "Succeeded", result.text()
    assert "uv failed" in result.stdout and "installing with pip instead" in result.stdout


def test_two_builds_of_one_version_never_break_each_other(tmp_path, agent, index_files) -> None:
    index = PackageIndex(index_files).start()
    first = stage_fake(tmp_path / "a" / "AmlSmokeTest", build="a", requires=("amlops-dep",))
    second = stage_fake(tmp_path / "b" / "AmlSmokeTest", build="b", requires=("amlops-dep",))
    env = isolated(tmp_path, "uv", PIP_INDEX_URL=index.url(), AMLOPS_PRUNE_AFTER_DAYS="0")
    results = {}
    started = threading.Event()
    release = tmp_path / "release-a"

    def slow_first() -> None:
        results["a"] = run(agent, first, dict(env, FAKE_WAIT_FOR=str(release)),
                           on_line=lambda process, line: line.startswith("amlops 0.0.1") and started.set())

    try:
        thread = threading.Thread(target=slow_first)
        thread.start()
        assert started.wait(120), "the first build never started its task"
        results["b"] = run(agent, second, env)  # installs its own folder and prunes, while a's job runs
        assert environment_of(agent, first).is_dir()  # in use: never removed
        release.write_text("")
        thread.join()
        results["b2"] = run(agent, second, env)  # a's job is over: its unused environment goes
    finally:
        index.stop()
    for name, result in results.items():
        assert result.result == "Succeeded", (name, result.text())
    assert environment_of(agent, first) != environment_of(agent, second)
    assert "removed the unused Python environment" in results["b2"].stdout
    assert environments(agent) == [environment_of(agent, second)]
