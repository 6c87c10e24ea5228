"""The local workspace's MLflow tracking store: where steps log with MLflow, as Azure ML jobs do.

Each step run gets MLFLOW_TRACKING_URI pointing at one SQLite store inside the workspace
(`<workspace>/mlruns/mlflow.db`, never the snapshot), the run's experiment as MLFLOW_EXPERIMENT_NAME and,
through MLFLOW_RUN_CONTEXT (tags MLflow adds to every run it starts), the tags that tie the MLflow run
to the amlops run and step; its name is `<run id>_<step>`, like AZUREML_RUN_ID. `mlflow ui
--backend-store-uri sqlite:///<workspace>/mlruns/mlflow.db` opens it.

amlops never imports mlflow (it costs seconds): the store is read with sqlite3 through MLflow's tables
(`runs`, `tags`, `latest_metrics`, `params`), which MLflow's migrations only ever add to.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

STORE_FOLDER = "mlruns"
STORE_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "artifacts"
RUN_TAG = "amlops.run_id"
STEP_TAG = "amlops.step"
# MLflow's client takes the default artifact root from this variable when it is set (mlflow
# tracking/_tracking_service/utils.py, _get_sqlalchemy_store); without it artifacts would go to ./mlruns
# of the step's working folder, which is the immutable snapshot.
ARTIFACT_ROOT_VARIABLE = "_MLFLOW_SERVER_ARTIFACT_ROOT"


def store_path(workspace_root: Path) -> Path:
    return workspace_root / STORE_FOLDER / STORE_FILE


def tracking_uri(workspace_root: Path) -> str:
    return f"sqlite:///{store_path(workspace_root).as_posix()}"


def tracking_environment(workspace_root: Path, run_id: str, step: str, experiment: str) -> dict[str, str]:
    """The variables a step needs to log to the workspace's store as its own MLflow run."""
    folder = workspace_root / STORE_FOLDER
    (folder / ARTIFACTS_FOLDER).mkdir(parents=True, exist_ok=True)
    return {
        "MLFLOW_TRACKING_URI": tracking_uri(workspace_root),
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "MLFLOW_RUN_CONTEXT": json.dumps({RUN_TAG: run_id, STEP_TAG: step, "mlflow.runName": f"{run_id}_{step}"}),
        ARTIFACT_ROOT_VARIABLE: (folder / ARTIFACTS_FOLDER).as_uri(),
    }


def step_metrics(workspace_root: Path, run_id: str) -> dict[str, dict[str, float]]:
    """{step: {metric: latest value}} of the MLflow runs the run's steps logged (empty when none did)."""
    path = store_path(workspace_root)
    if not path.is_file():
        return {}
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute(
                "SELECT step.value, metric.key, metric.value FROM tags AS run "
                "JOIN tags AS step ON step.run_uuid = run.run_uuid AND step.key = ? "
                "JOIN latest_metrics AS metric ON metric.run_uuid = run.run_uuid "
                "JOIN runs ON runs.run_uuid = run.run_uuid AND runs.lifecycle_stage = 'active' "
                "WHERE run.key = ? AND run.value = ? ORDER BY runs.start_time, metric.key",
                (STEP_TAG, RUN_TAG, run_id)).fetchall()
    except sqlite3.Error:
        return {}  # no MLflow tables yet (the store is being created), or a store MLflow no longer reads
    metrics: dict[str, dict[str, float]] = {}
    for step, key, value in rows:
        metrics.setdefault(step, {})[key] = value
    return metrics
