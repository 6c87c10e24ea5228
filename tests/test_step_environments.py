"""The component's environment is honoured locally: a package missing from its conda file fails the step
as on Azure ML, or, where the environment cannot be built, one warning names what the current Python lacks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amlops import api
from amlops.pipeline.environments import conda_dependencies, local_pip_packages, missing_packages
from support import edit


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A fresh environment cache, and uv kept off the network (no test downloads packages)."""
    monkeypatch.setenv("AMLOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.delenv("AMLOPS_USE_CURRENT_ENV", raising=False)
    return tmp_path / "cache"


def _needs_yaml(project: Path, pip: list[str]) -> None:
    """make.py imports yaml (PyYAML: in amlops' own environment) and its component gets a conda file."""
    (project / "environment").mkdir()
    (project / "environment" / "conda.yml").write_text(
        "name: mini\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
        + "".join(f"      - {package}\n" for package in pip) + ("" if pip else "      []\n"))
    edit(project / "components" / "make.yml", "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\n",
         "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\n  conda_file: ../environment/conda.yml\n")
    script = project / "code" / "make.py"
    script.write_text("import yaml  # noqa: F401\n" + script.read_text())


def test_a_package_missing_from_the_environment_fails_the_step_as_on_azure(workspace, mini_project, offline_cache):
    _needs_yaml(mini_project, [])
    api.publish(workspace, mini_project / "pipeline.yml")
    events = []
    run = api.submit(workspace, "mini-pipeline", on_event=lambda *event: events.append(event))
    assert run.status == "Failed"
    make = next(step for step in run.steps if step.name == "make")
    assert make.status == "Failed"
    assert "ModuleNotFoundError: No module named 'yaml'" in make.log_path.read_text()
    assert list(offline_cache.glob("step-environments/py*/.amlops-complete")), "built once, then cached"


def test_use_current_env_runs_the_steps_in_this_python(workspace, mini_project, offline_cache, monkeypatch):
    _needs_yaml(mini_project, [])
    api.publish(workspace, mini_project / "pipeline.yml")
    monkeypatch.setenv("AMLOPS_USE_CURRENT_ENV", "1")
    assert api.submit(workspace, "mini-pipeline").status == "Completed"


def test_the_cli_flag_opts_out(tmp_path, mini_project, offline_cache):
    _needs_yaml(mini_project, [])
    env = {**os.environ, "AMLOPS_WORKSPACE": str(tmp_path / "ws")}
    run = [sys.executable, "-m", "amlops"]
    assert subprocess.run([*run, "publish", str(mini_project / "pipeline.yml")], env=env).returncode == 0
    failed = subprocess.run([*run, "submit", "mini-pipeline"], env=env, capture_output=True, text=True)
    assert failed.returncode == 1 and "No module named 'yaml'" in failed.stdout + failed.stderr
    passed = subprocess.run([*run, "submit", "mini-pipeline", "--use-current-env"], env=env, capture_output=True,
                            text=True)
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_an_environment_that_cannot_be_built_warns_once_naming_what_is_missing(workspace, mini_project,
                                                                               offline_cache):
    _needs_yaml(mini_project, ["amlops-no-such-package==0.0.1"])  # offline: the build fails
    api.publish(workspace, mini_project / "pipeline.yml")
    events = []
    run = api.submit(workspace, "mini-pipeline", on_event=lambda *event: events.append(event))
    assert run.status == "Completed", run.error
    warnings = [text for kind, step, text in events if kind == "warning"]
    built = [text for text in warnings if "could not build" in text]
    assert len(built) == 1 and "the current Python lacks amlops-no-such-package" in built[0]
    assert "the step runs in the current Python" in built[0]


def test_an_image_environment_warns_that_it_runs_in_the_current_python(workspace, mini_project, offline_cache):
    api.publish(workspace, mini_project / "pipeline.yml")
    events = []
    api.submit(workspace, "mini-pipeline", on_event=lambda *event: events.append(event))
    warnings = [text for kind, step, text in events if kind == "warning"]
    expected = ("environment image mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest cannot be built "
                "locally; the step runs in the current Python (give the environment a conda_file to have its "
                "packages checked locally)")
    assert warnings == [expected], "one warning for the two steps that share the environment"


def test_conda_dependencies_and_missing_packages(tmp_path):
    conda = tmp_path / "conda.yml"
    conda.write_text("dependencies:\n  - python=3.11\n  - pip\n  - libgomp\n  - pip:\n      - PyYAML>=6\n"
                     "      - azureml-mlflow>=1.57\n")
    assert conda_dependencies(conda) == (["PyYAML>=6", "azureml-mlflow>=1.57"], ["libgomp"])
    assert missing_packages(["PyYAML>=6", "azureml-mlflow>=1.57"]) == ["azureml-mlflow"]


def test_the_azure_ml_tracking_plugin_is_not_installed_locally():
    assert local_pip_packages(["PyYAML==6.0.2", "azureml-mlflow==1.60.0", "AzureML_MLflow>=1",
                               "mlflow-skinny==3.1.0"]) == ["PyYAML==6.0.2", "mlflow-skinny==3.1.0"]


def test_a_step_environment_is_built_without_azureml_mlflow(workspace, mini_project, offline_cache):
    _needs_yaml(mini_project, ["azureml-mlflow==0.0.1"])  # offline: installing it would fail the build
    api.publish(workspace, mini_project / "pipeline.yml")
    events = []
    run = api.submit(workspace, "mini-pipeline", on_event=lambda *event: events.append(event))
    assert not [text for kind, _, text in events if kind == "warning" and "could not build" in text]
    assert list(offline_cache.glob("step-environments/py*/.amlops-complete")), "built without the plugin"
    make = next(step for step in run.steps if step.name == "make")
    assert "ModuleNotFoundError: No module named 'yaml'" in make.log_path.read_text(), "ran in the built environment"


def test_an_unreadable_conda_file_warns_and_runs_in_the_current_python(workspace, mini_project, offline_cache):
    _needs_yaml(mini_project, [])
    (mini_project / "environment" / "conda.yml").write_text("dependencies: [unclosed\n")
    api.publish(workspace, mini_project / "pipeline.yml")
    events = []
    run = api.submit(workspace, "mini-pipeline", on_event=lambda *event: events.append(event))
    assert run.status == "Completed", run.error
    assert any("cannot read the conda file" in text for kind, _, text in events if kind == "warning")
