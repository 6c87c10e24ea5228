"""Reading the sample azure-pipelines.yml as Azure Pipelines lays it out: stages, jobs (and deployment jobs, whose
steps sit under their strategy's lifecycle hooks) and steps."""
from __future__ import annotations

from pathlib import Path

import yaml

from support import REPO

SAMPLE = REPO / "azure-pipelines.yml"


def load(path: Path = SAMPLE) -> dict:
    return yaml.safe_load(path.read_text())


def jobs(document: dict) -> list[dict]:
    return [job for stage in document.get("stages", []) for job in stage.get("jobs", [])]


def job_steps(job: dict) -> list[dict]:
    """A job's steps, or a deployment job's (every lifecycle hook of its strategy)."""
    found = list(job.get("steps", []))
    for strategy in job.get("strategy", {}).values():
        for hook in strategy.values():
            found.extend(hook.get("steps", []))
    return found


def steps(document: dict) -> list[dict]:
    return list(document.get("steps", [])) + [step for job in jobs(document) for step in job_steps(job)]


def stage(document: dict, name: str) -> dict:
    return next(s for s in document["stages"] if s["stage"] == name)


def variables(document: dict) -> dict[str, str]:
    """The pipeline's own variables (a variable group's come from the project)."""
    return {v["name"]: str(v["value"]) for v in document.get("variables", []) if "name" in v}
