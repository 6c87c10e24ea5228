"""The Azure packages are optional and quiet: without them the local flow runs and `--backend azure` says what
to install; with them, azure-ai-ml writes nothing to stderr (a step set to fail on stderr would fail)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NO_AZURE = '''
import sys


class NoAzure:
    """Makes `import azure...` fail as if no Azure package were installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "azure" or name.startswith("azure."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoAzure())
'''


def amlops(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amlops", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def without_azure(tmp_path: Path) -> dict:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_AZURE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "AMLOPS_WORKSPACE": str(tmp_path / "ws")}
    env.pop("AMLOPS_BACKEND", None)
    probe = subprocess.run([sys.executable, "-c", "import azure.ai.ml"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'azure'" in probe.stderr, "the hook must hide azure"
    return env


def test_the_local_flow_runs_without_any_azure_package(without_azure, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(REPO / "tests" / "mini_project", project)
    published = amlops(["publish", "pipeline.yml"], project, without_azure)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("published mini_pipeline version 1")
    submitted = amlops(["submit", "mini-pipeline", "--set", "inputs.scale=3"], project, without_azure)
    assert submitted.returncode == 0, submitted.stderr
    assert "Completed" in submitted.stdout


def test_the_azure_backend_without_azure_packages_says_what_to_install(without_azure, tmp_path):
    result = amlops(["runs", "list", "--backend", "azure", "--subscription-id", "s", "--resource-group", "rg",
                     "--workspace-name", "ws"], tmp_path, without_azure)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: the azure backend needs the Azure packages; install them with " \
                                    "pip install 'amlops[azure]'"


QUIET = '''
from amlops.workspace.azure.client import import_azure_ai_ml

azure_ai_ml = import_azure_ai_ml()
azure_ai_ml.load_job("training/pipeline.yml")
azure_ai_ml.load_component("training/components/train.yml")._validate()
'''


def test_azure_ai_ml_writes_nothing_on_stderr_through_amlops():
    pytest.importorskip("azure.ai.ml")
    result = subprocess.run([sys.executable, "-c", QUIET], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.slow
def test_azure_ai_ml_alone_does_write_experimental_warnings_on_stderr():
    """The problem the test above guards against (so that one can fail)."""
    pytest.importorskip("azure.ai.ml")
    plain = QUIET.replace("from amlops.workspace.azure.client import import_azure_ai_ml", "import azure.ai.ml") \
        .replace("import_azure_ai_ml()", "azure.ai.ml")
    result = subprocess.run([sys.executable, "-c", plain], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "This is an experimental class" in result.stderr


def test_a_missing_credential_is_one_line(tmp_path):
    """DefaultAzureCredential logs the list of what it tried (14 lines, on stdout through azure-ai-ml's handler)
    before raising; only our line shows. Managed identity is pointed at a closed loopback port so nothing leaves
    the machine."""
    pytest.importorskip("azure.identity")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MSI_ENDPOINT": f"http://127.0.0.1:{closed}/msi",
           "AMLOPS_WORKSPACE": str(tmp_path / "ws"), "AZURE_CONFIG_DIR": str(tmp_path / "az")}
    result = amlops(["runs", "list", "--backend", "azure", "--subscription-id", "s", "--resource-group", "rg",
                     "--workspace-name", "ws"], tmp_path, env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot sign in to Azure for the jobs of workspace ws: ")
