"""The component's environment, honoured locally: a cached virtual environment with its conda file's pip
dependencies, so a package missing from the environment fails locally as it fails on Azure ML
(ModuleNotFoundError in the step log), not only in the cloud.

- `environment: {conda_file: ...}`: the pip dependencies are installed (uv, like the inference server's
  environment) in an environment cached by (Python version, packages); a cache hit costs one file check.
  Conda packages other than python and pip are not installed; they are named in a warning.
- an environment the local machine cannot build (`azureml:<name>@latest`, an image without a conda file),
  or a build that fails (no network): the step runs in the current Python, after one warning that says so
  and names the conda file's packages the current Python lacks.
- `--use-current-env` (AMLOPS_USE_CURRENT_ENV=1) runs every step in the current Python, as before.

Steps that log with MLflow get the local store's own needs (sqlalchemy, alembic) added, as Azure ML's
runtime brings its tracking plugin. That plugin (`azureml-mlflow`, which only points MLflow at Azure ML's
tracking server and pulls the Azure SDKs) is not installed locally: the steps log to the local store.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from amlops.errors import AmlopsError
from amlops.pipeline.model import Component

USE_CURRENT_ENV = "AMLOPS_USE_CURRENT_ENV"
MLFLOW_PACKAGES = {"mlflow", "mlflow-skinny", "azureml-mlflow"}
LOCAL_TRACKING_PACKAGES = ["sqlalchemy>=2.0", "alembic>=1.10"]
IGNORED_CONDA_PACKAGES = {"python", "pip"}
AZURE_ONLY_PIP_PACKAGES = {"azureml-mlflow"}
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class StepEnvironment:
    """Where a step's commands find `python`: bin_dir first on PATH, or the current Python (bin_dir None)."""
    bin_dir: Path | None
    warning: str | None = None


def use_current_env() -> bool:
    return os.environ.get(USE_CURRENT_ENV, "").lower() in ("1", "true", "yes")


def step_environment(component: Component, on_info: Callable[[str], None]) -> StepEnvironment:
    """The environment to run `component` in, built (or found in the cache) now."""
    if use_current_env():
        return StepEnvironment(None)
    conda_file = _conda_file(component.environment, component.path)
    if conda_file is None:
        return StepEnvironment(None, f"environment {_describe(component.environment)} cannot be built locally; "
                                     "the step runs in the current Python (give the environment a conda_file "
                                     "to have its packages checked locally)")
    try:
        pip_packages, conda_only = conda_dependencies(conda_file)
    except AmlopsError as error:
        return StepEnvironment(None, f"{error}; the step runs in the current Python")
    pip_packages = local_pip_packages(pip_packages)
    from amlops.deploy.local.server_env import cached_python

    try:
        python = cached_python("step-environments", _with_local_tracking(pip_packages), on_info,
                               what=f"the environment of {conda_file.name}",
                               fallback="pass --use-current-env to run the steps in the current Python")
    except AmlopsError as error:
        missing = missing_packages(pip_packages)
        lacking = f"; the current Python lacks {', '.join(missing)}" if missing else ""
        return StepEnvironment(None, f"could not build the environment of {conda_file} "
                                     f"({str(error).splitlines()[0]}); the step runs in the current Python{lacking}")
    return StepEnvironment(python.parent, f"conda packages of {conda_file.name} not installed locally (only its "
                           f"pip packages are): {', '.join(conda_only)}" if conda_only else None)


def conda_dependencies(conda_file: Path) -> tuple[list[str], list[str]]:
    """(pip requirements, other conda packages besides python and pip) of a conda environment file."""
    try:
        document = yaml.safe_load(conda_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise AmlopsError(f"cannot read the conda file {conda_file}: {error}; fix the file") from None
    pip: list[str] = []
    conda: list[str] = []
    for entry in document.get("dependencies") or []:
        if isinstance(entry, dict):
            pip += [str(item) for item in entry.get("pip") or []]
        elif _name(str(entry)) not in IGNORED_CONDA_PACKAGES:
            conda.append(str(entry))
    return pip, conda


def local_pip_packages(requirements: list[str]) -> list[str]:
    """The pip requirements a local step environment installs: all but Azure ML's tracking plugin."""
    return [requirement for requirement in requirements if _name(requirement) not in AZURE_ONLY_PIP_PACKAGES]


def missing_packages(requirements: list[str]) -> list[str]:
    """The requirements whose distribution the current Python does not have."""
    missing = []
    for requirement in requirements:
        name = _name(requirement)
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _with_local_tracking(packages: list[str]) -> list[str]:
    if any(_name(package) in MLFLOW_PACKAGES for package in packages):
        return sorted(packages + LOCAL_TRACKING_PACKAGES)
    return sorted(packages)


def _name(requirement: str) -> str:
    match = REQUIREMENT_NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.strip().lower()


def _conda_file(environment: Any, component_path: Path) -> Path | None:
    if isinstance(environment, dict) and environment.get("conda_file"):
        return (component_path.parent / str(environment["conda_file"])).resolve()
    return None


def _describe(environment: Any) -> str:
    if isinstance(environment, dict):
        return f"image {environment.get('image')}" if environment.get("image") else "without a conda_file"
    return str(environment)


__all__ = ["StepEnvironment", "step_environment", "conda_dependencies", "local_pip_packages", "missing_packages",
           "USE_CURRENT_ENV"]
