"""Evaluate a trained safe-driver model on the held-out 20 % of the data and write metrics.json.

    python evaluate.py --model model_dir/ --test-data data.csv --metrics-output metrics_dir/

splits the data exactly as train.py does (same rows held out: neither training nor early stopping saw
them), scores them with the model in model_dir (model.lgb of the MLflow model, or model.txt) and writes
metrics_dir/metrics.json: auc, accuracy and log_loss, the numbers the registration gate compares. Inside
a job it logs the same metrics with MLflow, and the held-out row and positive counts as parameters.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from train import (
    ID, LEGACY_MODEL_FILE, MODEL_FILE, TARGET, DataError, get_model_metrics, load_data, run_command, split_holdout,
    tracking,
)

METRICS_FILE = "metrics.json"
THRESHOLD = 0.5


def load_model(model_dir: str | Path) -> lightgbm.Booster:
    """The booster in model_dir (model.lgb, or model.txt of older models); DataError with one clear line if
    absent or unreadable."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        path = Path(model_dir) / LEGACY_MODEL_FILE
    if not path.is_file():
        raise DataError(f"no {MODEL_FILE} (or {LEGACY_MODEL_FILE}) in the model folder {model_dir}")
    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as error:
        raise DataError(f"cannot load {path}: {str(error).strip().splitlines()[0]}") from None


def evaluate(model: Any, data: tuple[lightgbm.Dataset, lightgbm.Dataset]) -> dict[str, float]:
    """auc, accuracy and log_loss (threshold 0.5) on data[1]: model quality only (counts are not metrics)."""
    valid = data[1]
    labels = np.asarray(valid.label)
    if len(np.unique(labels)) < 2:
        raise DataError(f"the held-out {len(labels)} rows hold only one class; AUC needs both 0 and 1 labels")
    probabilities = np.clip(np.asarray(model.predict(valid.data), dtype=float), 0.0, 1.0)
    metrics = get_model_metrics(model, data)
    metrics.update({
        "accuracy": float(accuracy_score(labels, probabilities >= THRESHOLD)),
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
    })
    return metrics


def holdout_dataset(frame) -> lightgbm.Dataset:
    """The held-out rows train.py never saw, as a dataset with its raw features kept for predicting."""
    _, holdout = split_holdout(frame)
    return lightgbm.Dataset(holdout.drop(columns=[TARGET, ID]), label=np.asarray(holdout[TARGET]),
                            free_raw_data=False)


def _check_features(model: lightgbm.Booster, valid: lightgbm.Dataset, path: str) -> None:
    expected = model.feature_name()
    actual = [str(c) for c in valid.data.columns]
    if actual != expected:
        missing = [name for name in expected if name not in actual]
        detail = f"missing {', '.join(missing[:5])}" if missing else "columns differ or are in another order"
        raise DataError(f"data file {path} does not have the model's {len(expected)} features ({detail})")


def write_metrics(metrics: dict[str, float], output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate the safe-driver model on the held-out 20 %.")
    parser.add_argument("--model", required=True, type=Path, help=f"folder holding {MODEL_FILE}")
    parser.add_argument("--test-data", required=True,
                        help="the CSV the model was trained on (its held-out 20 % is scored)")
    parser.add_argument("--metrics-output", required=True, type=Path,
                        help=f"folder to write {METRICS_FILE} into")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, float]:
    model = load_model(args.model)
    print(f"loaded {args.model} ({model.num_trees()} trees)", flush=True)
    holdout = holdout_dataset(load_data(args.test_data))
    _check_features(model, holdout, args.test_data)
    metrics = evaluate(model, (None, holdout))
    rows, positives = len(holdout.label), int(np.sum(holdout.label))
    with tracking() as mlflow:
        if mlflow:
            mlflow.log_params({"holdout_rows": rows, "holdout_positives": positives})
            mlflow.log_metrics(metrics)
    path = write_metrics(metrics, args.metrics_output)
    print(f"auc {metrics['auc']:.4f} on {rows} held-out rows ({positives} positive); wrote {path}", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_command(run, args, args.metrics_output)


if __name__ == "__main__":
    sys.exit(main())
