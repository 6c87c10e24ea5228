"""`--output json|table` for the list and show commands, and the stable JSON records they print.

The field names below are a contract (docs/architecture.md lists them): add fields, never rename.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import click

from amlops.cli.echo import untrusted

OUTPUT_FORMATS = ("table", "json")


def output_option(command: Callable) -> Callable:
    """--output table (for people, the default) or json (for scripts; stable field names)."""
    return click.option("--output", "-o", "output_format", type=click.Choice(OUTPUT_FORMATS), default="table",
                        show_default=True, help="table for people, json for scripts (stable field names).")(command)


def echo_json(value: Any) -> None:
    """Printed as untrusted text: records carry step errors and server answers."""
    click.echo(untrusted(json.dumps(value, indent=2, default=str)))


def step_record(step) -> dict[str, Any]:
    return {"name": step.name, "status": step.status, "started_at": step.started_at, "ended_at": step.ended_at,
            "reused_from": step.reused_from, "log_path": str(step.log_path) if step.log_path else None}


def run_record(run, mlflow_metrics: dict | None = None) -> dict[str, Any]:
    record = {
        "id": run.id, "pipeline_name": run.pipeline_name, "pipeline_version": run.pipeline_version,
        "experiment": run.experiment, "status": run.status, "created_at": run.created_at,
        "ended_at": run.ended_at, "parameters": run.parameters, "tags": run.tags, "metrics": run.metrics,
        "outputs": run.outputs, "error": run.error, "steps": [step_record(step) for step in run.steps],
    }
    if mlflow_metrics is not None:
        record["mlflow_metrics"] = mlflow_metrics
    return record


def model_record(model) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "type": model.type,
            "path": str(model.path), "run_id": model.run_id, "created_at": model.created_at, "tags": model.tags,
            "properties": model.properties}


def deployment_record(deployment) -> dict[str, Any]:
    """Never the scoring key: it is a secret."""
    return {"name": deployment.name, "model_name": deployment.model_name,
            "model_version": deployment.model_version, "status": deployment.status,
            "scoring_uri": deployment.scoring_uri, "pid": deployment.pid,
            "log_path": str(deployment.log_path) if deployment.log_path else None,
            "created_at": deployment.created_at, "error": deployment.error}


def policy_record(policy) -> dict[str, Any]:
    return {"id": policy.id, "type_id": policy.type_id, "type_name": policy.type_name,
            "is_blocking": policy.is_blocking, "is_enabled": policy.is_enabled, "settings": policy.settings}
