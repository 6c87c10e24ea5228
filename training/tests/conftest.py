"""Shared test setup: put training/src and training/scoring on sys.path; small generated data and a model."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

TRAINING = Path(__file__).resolve().parents[1]
for folder in (TRAINING / "src", TRAINING / "scoring"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from generate_data import generate  # noqa: E402
from train import main as train_main  # noqa: E402


@pytest.fixture(scope="session")
def training_dir() -> Path:
    return TRAINING


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """4,000 generated rows: enough for both classes in the 20 % hold-out, fast to train on."""
    return generate(4000, seed=5, signal=1.5)


@pytest.fixture(scope="session")
def small_csv(small_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.csv"
    small_frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def model_dir(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the MLflow model (MLmodel, model.lgb) trained on small_csv by the train CLI."""
    folder = tmp_path_factory.mktemp("model")
    assert train_main(["--training-data", str(small_csv), "--model-output", str(folder),
                       "--learning-rate", "0.1"]) == 0
    return folder
