"""Train the safe-driver LightGBM model (the MLOps OpenHack `train.py` contract, plus a CLI).

    python train.py --training-data data.csv --model-output out/ [--learning-rate 0.02 --num-leaves 31
                    --min-data-in-leaf 20 --feature-fraction 0.8 --seed 1]

writes out/model.txt (LightGBM text format) and prints the validation AUC.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightgbm
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

TARGET = "target"
ID = "id"
NUM_BOOST_ROUND = 500
EARLY_STOPPING_ROUNDS = 20
MODEL_FILE = "model.txt"


class DataError(Exception):
    """The input data cannot be used; the message is one line meant for the user."""


def split_data(data_df: pd.DataFrame) -> tuple[lightgbm.Dataset, lightgbm.Dataset]:
    """Split a dataframe 80/20 into training and validation LightGBM datasets (drops `target` and `id`)."""
    features = data_df.drop([TARGET, ID], axis=1)
    labels = np.array(data_df[TARGET])
    features_train, features_valid, labels_train, labels_valid = train_test_split(
        features, labels, test_size=0.2, random_state=0)
    train_data = lightgbm.Dataset(features_train, label=labels_train)
    valid_data = lightgbm.Dataset(features_valid, label=labels_valid, reference=train_data,
                                  free_raw_data=False)
    return train_data, valid_data


def train_model(data: Sequence[lightgbm.Dataset], parameters: dict[str, Any]) -> lightgbm.Booster:
    """Train a booster with exactly `parameters`, early stopping on the validation set data[1]."""
    return lightgbm.train(
        parameters,
        data[0],
        valid_sets=[data[1]],
        num_boost_round=NUM_BOOST_ROUND,
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )


def get_model_metrics(model: Any, data: Sequence[lightgbm.Dataset]) -> dict[str, float]:
    """{"auc": ...} of the model's predictions on the validation set data[1]."""
    predictions = model.predict(data[1].data)
    return {"auc": float(roc_auc_score(data[1].label, predictions))}


def default_parameters(learning_rate: float = 0.02, num_leaves: int = 31, min_data_in_leaf: int = 20,
                       feature_fraction: float = 0.8, seed: int = 1, num_threads: int = 1) -> dict[str, Any]:
    """The LightGBM parameters the pipeline trains with. One thread by default: on the small sample
    OpenMP's spinning threads cost far more than they gain whenever another process wants the CPU."""
    return {
        "objective": "binary",
        "metric": "auc",
        "boosting_type": "gbdt",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_data_in_leaf,
        "feature_fraction": feature_fraction,
        "seed": seed,
        "num_threads": num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def load_data(path: str | Path) -> pd.DataFrame:
    """Read the CSV; raise DataError with one clear line if it is missing, unreadable or lacks id/target."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"data path is a folder, expected a CSV file: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read data file {path}: {reason}") from None
    missing = [column for column in (TARGET, ID) if column not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:8])) + (", ..." if frame.shape[1] > 8 else "")
        raise DataError(f"data file {path} has no {' and no '.join(repr(c) for c in missing)} column "
                        f"(columns: {shown})")
    _check_usable(frame, path)
    return frame


def _check_usable(frame: pd.DataFrame, path: str | Path) -> None:
    features = frame.drop(columns=[TARGET, ID])
    if features.shape[1] == 0:
        raise DataError(f"data file {path} has no feature columns besides 'id' and 'target'")
    text = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise DataError(f"data file {path} has non-numeric feature column(s): {', '.join(text[:5])}")
    labels = frame[TARGET]
    if not labels.isin([0, 1]).all():
        raise DataError(f"data file {path}: column 'target' must hold only 0 and 1")
    if len(frame) < 10:
        raise DataError(f"data file {path} has {len(frame)} rows; at least 10 are needed to split 80/20")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the safe-driver LightGBM model.")
    parser.add_argument("--training-data", required=True, help="CSV with id, target and feature columns")
    parser.add_argument("--model-output", required=True, type=Path, help=f"folder to write {MODEL_FILE} into")
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--num-leaves", type=int, default=31)
    parser.add_argument("--min-data-in-leaf", type=int, default=20)
    parser.add_argument("--feature-fraction", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=1, help="LightGBM threads (0: one per core)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    print(f"reading {args.training_data}", flush=True)
    frame = load_data(args.training_data)
    print(f"{len(frame)} rows, {frame.shape[1] - 2} features, {frame[TARGET].mean():.2%} positive",
          flush=True)
    data = split_data(frame)
    parameters = default_parameters(args.learning_rate, args.num_leaves, args.min_data_in_leaf,
                                    args.feature_fraction, args.seed, args.num_threads)
    print(f"training with {parameters}", flush=True)
    try:
        model = train_model(data, parameters)
        metrics = get_model_metrics(model, data)
    except (lightgbm.basic.LightGBMError, ValueError) as error:
        raise DataError(f"training failed: {str(error).strip().splitlines()[0]}") from None
    args.model_output.mkdir(parents=True, exist_ok=True)
    model_path = args.model_output / MODEL_FILE
    model.save_model(str(model_path))
    print(f"best iteration {model.best_iteration}, validation auc {metrics['auc']:.4f}", flush=True)
    print(f"saved {model_path} ({time.perf_counter() - started:.1f}s)", flush=True)
    return metrics


def run_command(step: Callable[[argparse.Namespace], Any], args: argparse.Namespace, output: Path) -> int:
    """Run a step's CLI: a data or write problem is one line on stderr and exit code 1, no traceback."""
    try:
        step(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write to {output}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_command(run, args, args.model_output)


if __name__ == "__main__":
    sys.exit(main())
