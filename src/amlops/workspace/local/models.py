"""The model asset types a version is registered as, and what each needs (Azure ML's rules)."""
from __future__ import annotations

from pathlib import Path

from amlops.errors import AmlopsError
from amlops.workspace.entities import MODEL_TYPES

MODEL_TYPE_PROPERTY = "amlops.model_type"
MLMODEL_FILE = "MLmodel"


def check_model_type(model_type: str, source: Path) -> None:
    """custom_model takes any file or folder; mlflow_model a folder holding an MLflow model, that is with an
    MLmodel file at its root (https://learn.microsoft.com/azure/machine-learning/how-to-manage-models-mlflow,
    "Create models from an asset": a folder containing an MLmodel MLflow model; reference-yaml-model lists the
    types). Checked for local files on both backends; a job output's files are checked by Azure ML."""
    if model_type not in MODEL_TYPES:
        raise AmlopsError(f"model type '{model_type}' is not supported; use one of {', '.join(MODEL_TYPES)}")
    if model_type == "mlflow_model" and not (source / MLMODEL_FILE).is_file():
        raise AmlopsError(f"{source} is not an MLflow model (no {MLMODEL_FILE} file at its root); register it as "
                          "custom_model, or save it with mlflow.<flavor>.save_model")
