"""Train the safe-driver LightGBM model (the MLOps OpenHack `train.py` contract, plus a CLI).

    python train.py --training-data data.csv --model-output out/ [--learning-rate 0.02 --num-leaves 31
                    --min-data-in-leaf 20 --feature-fraction 0.8 --seed 1 --num-threads 0]

The data is split once: 20 % held out for evaluate.py (never seen here), the rest 80/20 into training and
early-stopping validation. Writes out/ as an MLflow model (MLmodel, model.lgb in LightGBM's text format,
its environment files), so it registers as `mlflow_model` or `custom_model`. Inside a job (MLflow tracking
configured, as Azure ML and the local workspace do) it logs its parameters and the validation AUC.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import lightgbm
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

TARGET = "target"
ID = "id"
NUM_BOOST_ROUND = 500
EARLY_STOPPING_ROUNDS = 20
# Early stopping ignores gains below this fraction of the validation AUC's standard error: the more
# validation rows, the finer the gains it still counts, so it stops when the data can no longer tell.
NOISE_FRACTION = 0.1
HOLDOUT_FRACTION = 0.2
CHUNK_ROWS = 50_000
MODEL_FILE = "model.lgb"  # LightGBM's text format, inside an MLflow model folder
LEGACY_MODEL_FILE = "model.txt"  # what models registered before the MLflow format hold


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


def holdout_indices(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(development rows, held-out rows): the held-out 20 % is for evaluate.py only; stratified so it keeps
    the positive rate. Same rows every time for the same data."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(classes) > 1 and counts.min() >= 2 else None
    development, holdout = train_test_split(np.arange(len(labels)), test_size=HOLDOUT_FRACTION, random_state=0,
                                            stratify=stratify)
    return development, holdout


def split_holdout(data_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(development, held-out) rows of a frame, as holdout_indices splits them."""
    development, holdout = holdout_indices(data_df[TARGET])
    return data_df.iloc[development], data_df.iloc[holdout]


def development_datasets(features: np.ndarray, labels: np.ndarray,
                         names: list[str]) -> tuple[lightgbm.Dataset, lightgbm.Dataset]:
    """The training and early-stopping datasets from the development rows (the same rows split_data picks
    from split_holdout's development frame). They hold copies of their rows, so the caller can free
    `features` before training bins them (and then frees the training copy)."""
    development, _ = holdout_indices(labels)
    train_rows, valid_rows = train_test_split(development, test_size=0.2, random_state=0)
    train_data = lightgbm.Dataset(features[train_rows], label=labels[train_rows], feature_name=names,
                                  params={"verbose": -1})
    valid_data = lightgbm.Dataset(features[valid_rows], label=labels[valid_rows], feature_name=names,
                                  reference=train_data, free_raw_data=False)
    return train_data, valid_data


def auc_noise(labels: Any) -> float:
    """The standard error of an AUC measured on these labels (Hanley & McNeil 1982, at AUC 0.5)."""
    labels = np.asarray(labels)
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    if positives == 0 or negatives == 0:
        return 0.0
    return math.sqrt((positives + negatives + 1) / (12 * positives * negatives))


def train_model(data: Sequence[lightgbm.Dataset], parameters: dict[str, Any]) -> lightgbm.Booster:
    """Train a booster with exactly `parameters`, early stopping on the validation set data[1]: gains
    smaller than the validation set can resolve do not count, so big data stops as soon as small data."""
    labels = data[1].label if data[1].label is not None else []
    min_delta = NOISE_FRACTION * auc_noise(labels)
    return lightgbm.train(
        parameters,
        data[0],
        valid_sets=[data[1]],
        num_boost_round=NUM_BOOST_ROUND,
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, min_delta=min_delta, verbose=False)],
    )


def get_model_metrics(model: Any, data: Sequence[lightgbm.Dataset]) -> dict[str, float]:
    """{"auc": ...} of the model's predictions on the validation set data[1]."""
    predictions = model.predict(data[1].data)
    return {"auc": float(roc_auc_score(data[1].label, predictions))}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_parameters(learning_rate: float = 0.02, num_leaves: int = 31, min_data_in_leaf: int = 20,
                       feature_fraction: float = 0.8, seed: int = 1, num_threads: int = 0) -> dict[str, Any]:
    """The LightGBM parameters the pipeline trains with; num_threads 0 means every core this process may use
    (the pipeline input `num_threads` sets it; 1 is faster on tiny data on a busy machine)."""
    num_threads = num_threads if num_threads > 0 else available_cores()
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
    """Read the CSV; raise DataError with one clear line if it is missing, unreadable or lacks id/target.
    Features are read as float32 (what LightGBM bins from), so the frame takes about 2x the CSV, not 4x."""
    try:
        frame = pd.read_csv(path, dtype=_column_types(path), low_memory=True)
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"data path is a folder, expected a CSV file: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read data file {path}: {reason}") from None
    except ValueError:  # a column that is not numeric: read it as text to name it
        frame = pd.read_csv(path)
    missing = [column for column in (TARGET, ID) if column not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:8])) + (", ..." if frame.shape[1] > 8 else "")
        raise DataError(f"data file {path} has no {' and no '.join(repr(c) for c in missing)} column "
                        f"(columns: {shown})")
    _check_usable(frame, path)
    return frame


def _column_types(path: str | Path) -> dict[str, str]:
    """float32 for the features and the label, int64 for the id; {} if the header cannot be read (then
    reading the whole file reports the problem)."""
    try:
        columns = pd.read_csv(path, nrows=0).columns
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return {str(column): ("int64" if column == ID else "float32") for column in columns}


def load_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features as float32 rows x columns, labels, feature names), read in chunks into one preallocated
    array: the peak is that array plus one chunk, not pandas' whole-file parse buffers (about 1.5x the CSV
    instead of 4x). A problem with the file is the same one clear line as load_data's."""
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        if TARGET not in columns or ID not in columns or len(columns) < 3:
            raise ValueError("checked by load_data")
        names = [c for c in columns if c not in (TARGET, ID)]
        features = np.empty((_count_rows(path), len(names)), dtype=np.float32)
        labels = np.empty(len(features), dtype=np.float32)
        start = 0
        for chunk in pd.read_csv(path, dtype=_column_types(path), chunksize=CHUNK_ROWS):
            _check_usable(chunk, path, min_rows=0)
            end = start + len(chunk)
            features[start:end] = chunk[names].to_numpy(dtype=np.float32)
            labels[start:end] = chunk[TARGET].to_numpy(dtype=np.float32)
            start = end
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        load_data(path)  # reads the file the plain way to report what is wrong with it
        raise
    if start < 10:
        raise DataError(f"data file {path} has {start} rows; at least 10 are needed to split 80/20")
    return features[:start], labels[:start], names


def _count_rows(path: str | Path) -> int:
    """Data lines (without the header), counted in binary: an upper bound for the preallocated array."""
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return lines + 1


def _check_usable(frame: pd.DataFrame, path: str | Path, min_rows: int = 10) -> None:
    features = frame.drop(columns=[TARGET, ID])
    if features.shape[1] == 0:
        raise DataError(f"data file {path} has no feature columns besides 'id' and 'target'")
    text = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise DataError(f"data file {path} has non-numeric feature column(s): {', '.join(text[:5])}")
    labels = frame[TARGET]
    if not labels.isin([0, 1]).all():
        raise DataError(f"data file {path}: column 'target' must hold only 0 and 1")
    if len(frame) < min_rows:
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
    parser.add_argument("--num-threads", type=int, default=0, help="LightGBM threads (0: one per core)")
    return parser.parse_args(argv)


@contextmanager
def tracking() -> Iterator[Any]:
    """The mlflow module inside the step's MLflow run when tracking is configured (Azure ML sets
    MLFLOW_TRACKING_URI and MLFLOW_RUN_ID for every job; the local workspace sets its own store), else
    None: run outside a job, the script logs nothing and leaves no mlruns folder behind."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        yield None
        return
    import mlflow

    with mlflow.start_run():
        yield mlflow


def save_mlflow_model(model: lightgbm.Booster, output: Path) -> Path:
    """Write `output` as an MLflow model (lightgbm and python_function flavors); the files of an earlier
    model there are replaced. No signature: MLflow would then refuse integer columns for float features,
    and JSON callers send integers."""
    import mlflow.lightgbm

    requirements = [f"lightgbm=={lightgbm.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mlflow-", dir=output))
    try:
        mlflow.lightgbm.save_model(model, str(staging / "model"), pip_requirements=requirements)
        for item in (staging / "model").iterdir():
            target = output / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output / MODEL_FILE


def run(args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    print(f"reading {args.training_data}", flush=True)
    matrix, labels, names = load_arrays(args.training_data)
    rows, features, positive_rate = len(labels), len(names), float(labels.mean())
    print(f"{rows} rows, {features} features, {positive_rate:.2%} positive", flush=True)
    data = development_datasets(matrix, labels, names)
    del matrix
    parameters = default_parameters(args.learning_rate, args.num_leaves, args.min_data_in_leaf,
                                    args.feature_fraction, args.seed, args.num_threads)
    print(f"training with {parameters}", flush=True)
    try:
        model = train_model(data, parameters)
        metrics = get_model_metrics(model, data)
    except (lightgbm.basic.LightGBMError, ValueError) as error:
        raise DataError(f"training failed: {str(error).strip().splitlines()[0]}") from None
    del data  # MLflow (about 50 MB of modules) is imported only once the training data is freed
    model_path = save_mlflow_model(model, args.model_output)
    with tracking() as mlflow:
        if mlflow:
            mlflow.log_params({**parameters, "rows": rows, "features": features,
                               "positive_rate": round(positive_rate, 6), "best_iteration": model.best_iteration})
            mlflow.log_metric("valid_auc", metrics["auc"])
    print(f"best iteration {model.best_iteration}, early-stopping validation auc {metrics['auc']:.4f}",
          flush=True)
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
