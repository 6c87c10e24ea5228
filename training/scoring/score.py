"""Azure ML inference server entry script for the safe-driver model.

init() loads the LightGBM model from AZUREML_MODEL_DIR (searched recursively: Azure ML may nest the
registered folder): model.lgb of an MLflow model folder (registered as mlflow_model or custom_model) or
model.txt of older models. run(raw_data) scores a JSON body {"data": [row, ...]} where each row is either
an object keyed by feature name (absent features are missing, -1) or a list of all feature values in the
model's order. It returns {"predictions": [probability, ...]}; a malformed request gets HTTP 400 with
{"error": "..."} (an AMLResponse, the inference server's way to set the status code).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd

MODEL_FILES = ("model.lgb", "model.txt")  # the MLflow model's LightGBM file, then the older plain one
MISSING = -1.0

model: lightgbm.Booster | None = None
feature_names: list[str] = []


class RequestError(ValueError):
    """The request is malformed; the message is one line for the caller."""


def find_model_file(model_dir: str | Path) -> Path:
    """model.lgb or model.txt in model_dir or below (the shallowest, then model.lgb, then alphabetical)."""
    root = Path(model_dir)
    candidates = [path for name in MODEL_FILES for path in root.rglob(name)] if root.is_dir() else []
    if not candidates:
        raise FileNotFoundError(f"no {' or '.join(MODEL_FILES)} found in the model folder {root} "
                                "(AZUREML_MODEL_DIR) or any folder below it")
    return min(candidates, key=lambda p: (len(p.parts), MODEL_FILES.index(p.name), str(p)))


def init() -> None:
    """Load the booster once, when the scoring container starts."""
    global model, feature_names
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set; it must point at the registered model's folder")
    path = find_model_file(model_dir)
    model = lightgbm.Booster(model_file=str(path))
    feature_names = list(model.feature_name())
    print(f"loaded {path}: {model.num_trees()} trees, {len(feature_names)} features")


def _number(value: Any, where: str) -> float:
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{where} must be a number or null, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise RequestError(f"{where} must be a finite number")
    return float(value)


def _row_values(row: Any, index: int) -> list[float]:
    if isinstance(row, dict):
        unknown = [str(name) for name in row if name not in feature_names]
        if unknown:
            raise RequestError(f"row {index} has unknown feature(s): {', '.join(sorted(unknown)[:5])}")
        return [_number(row.get(name), f"row {index} feature '{name}'") for name in feature_names]
    if isinstance(row, list):
        if len(row) != len(feature_names):
            raise RequestError(f"row {index} has {len(row)} values; expected {len(feature_names)} "
                               "(all features, in the model's order)")
        return [_number(value, f"row {index} value {position}") for position, value in enumerate(row)]
    raise RequestError(f"row {index} must be an object keyed by feature name or a list of values")


def parse_request(raw_data: str | bytes | dict) -> pd.DataFrame:
    """The request's rows as a frame with the model's feature columns; RequestError if malformed."""
    if isinstance(raw_data, (str, bytes, bytearray)):
        try:
            raw_data = json.loads(raw_data)
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(f"the request body is not valid JSON: {str(error).splitlines()[0]}") from None
    if not isinstance(raw_data, dict) or "data" not in raw_data:
        raise RequestError('the request must be a JSON object {"data": [row, ...]}')
    rows = raw_data["data"]
    if not isinstance(rows, list) or not rows:
        raise RequestError('"data" must be a non-empty list of rows')
    values = [_row_values(row, index) for index, row in enumerate(rows)]
    return pd.DataFrame(np.asarray(values, dtype=float), columns=feature_names)


def error_response(message: str, status: int) -> Any:
    """{"error": message} with an HTTP status: an AMLResponse inside the inference server (which maps
    azureml.contrib.services.aml_response to its own); outside it (unit tests) the plain dict."""
    try:
        from azureml.contrib.services.aml_response import AMLResponse
    except ImportError:
        return {"error": message}
    return AMLResponse({"error": message}, status, json_str=True)


def run(raw_data: str | bytes | dict) -> Any:
    """Score a request: {"predictions": [...]}, HTTP 400 for a malformed request, 503 before init()."""
    if model is None:
        return error_response("the model is not loaded; init() has not run or failed", 503)
    try:
        frame = parse_request(raw_data)
    except RequestError as error:
        return error_response(str(error), 400)
    probabilities = np.clip(model.predict(frame), 0.0, 1.0)
    return {"predictions": [float(p) for p in probabilities]}
