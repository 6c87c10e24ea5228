"""The sample's environments pin exact versions (Azure ML builds an image per conda file and advises exact pins,
so a rebuild months later installs the same libraries), and they are the versions the local flow installs: the
extension's launcher installs amlops[local,azure] with tasks/constraints.txt, and the local inference server's
environment installs training/scoring/requirements.txt as it is. A model trained and served locally then runs
the same lightgbm, pandas and numpy as on Azure ML."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import yaml

from amlops.pipeline.environments import local_pip_packages

REPO = Path(__file__).resolve().parents[1]
CONDA = REPO / "training" / "environment" / "conda.yml"
SCORING = REPO / "training" / "scoring" / "requirements.txt"
CONSTRAINTS = REPO / "tasks" / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


def requirement_lines(lines: list[str]) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def conda_pip() -> list[str]:
    dependencies = yaml.safe_load(CONDA.read_text(encoding="utf-8"))["dependencies"]
    return [entry for item in dependencies if isinstance(item, dict) for entry in item.get("pip", [])]


def locally_installed(training: dict[str, str]) -> dict[str, str]:
    """The pins the local flow installs: all but azureml-mlflow, the Azure ML tracking plugin the local step
    environment skips (amlops.pipeline.environments)."""
    kept = {normalized(requirement.split("==")[0]) for requirement in local_pip_packages(
        [f"{name}=={version}" for name, version in training.items()])}
    return {name: version for name, version in training.items() if name in kept}


def pins(lines: list[str]) -> dict[str, str]:
    """name -> version of `name==version` lines; AssertionError naming each line that is not an exact pin."""
    loose = [line for line in lines if not PIN.match(line)]
    assert not loose, f"not exact pins (write name==version): {loose}"
    return {normalized(PIN.match(line).group(1)): PIN.match(line).group(2) for line in lines}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_training_and_scoring_environments_pin_exact_versions():
    assert set(pins(conda_pip())) == {"lightgbm", "pandas", "numpy", "scikit-learn", "mlflow-skinny", "azureml-mlflow"}
    assert set(pins(requirement_lines(SCORING.read_text(encoding="utf-8").splitlines()))) == \
        {"lightgbm", "numpy", "pandas"}


def test_the_pin_check_names_a_loose_requirement():
    try:
        pins(["lightgbm>=4.0", "numpy==2.4.6"])
    except AssertionError as error:
        assert "lightgbm>=4.0" in str(error) and "numpy" not in str(error).split("[")[-1]
    else:
        raise AssertionError("a >= requirement passed as a pin")


def test_azure_ml_installs_what_the_local_flow_installs():
    constraints = pins(requirement_lines(CONSTRAINTS.read_text(encoding="utf-8").splitlines()))
    training = locally_installed(pins(conda_pip()))
    assert set(pins(conda_pip())) - set(training) == {"azureml-mlflow"}
    scoring = pins(requirement_lines(SCORING.read_text(encoding="utf-8").splitlines()))
    assert {name: constraints.get(name) for name in training} == training
    assert {name: training[name] for name in scoring} == scoring, "training and scoring must use the same versions"


def test_the_local_extra_admits_the_pinned_versions():
    """`pip install amlops[local]` (what a developer installs to run the flow locally) may resolve to them."""
    from packaging.requirements import Requirement

    local = [Requirement(text) for text in metadata.requires("amlops") or [] if 'extra == "local"' in text]
    declared = {normalized(requirement.name): requirement.specifier for requirement in local}
    for name, version in locally_installed(pins(conda_pip())).items():
        assert name in declared, f"{name} is not in amlops[local]"
        assert declared[name].contains(version), f"amlops[local] excludes {name}=={version}: {declared[name]}"
