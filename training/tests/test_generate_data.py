"""Tests of the Porto-Seguro-shaped data generator (training/src/generate_data.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import generate_data
from generate_data import FEATURE_COLUMNS, MISSING_RATES, generate, latent_score
from train import default_parameters, get_model_metrics, split_data, train_model


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(20000, seed=42, signal=1.0)


def test_columns_are_the_original_competitions(frame: pd.DataFrame) -> None:
    assert list(frame.columns[:2]) == ["id", "target"]
    assert list(frame.columns[2:]) == FEATURE_COLUMNS
    assert len(FEATURE_COLUMNS) == 57 == len(set(FEATURE_COLUMNS))
    groups = {group: [c for c in FEATURE_COLUMNS if c.startswith(f"ps_{group}_")]
              for group in ("ind", "reg", "car", "calc")}
    sizes = {group: len(columns) for group, columns in groups.items()}
    assert sizes == {"ind": 18, "reg": 3, "car": 16, "calc": 20}
    for name in ("ps_ind_02_cat", "ps_ind_06_bin", "ps_ind_14", "ps_reg_03", "ps_car_11_cat", "ps_car_11",
                 "ps_car_15", "ps_calc_14", "ps_calc_15_bin", "ps_calc_20_bin"):
        assert name in FEATURE_COLUMNS
    assert sum(c.endswith("_bin") for c in FEATURE_COLUMNS) == 17
    assert sum(c.endswith("_cat") for c in FEATURE_COLUMNS) == 14


def test_value_types_and_ranges(frame: pd.DataFrame) -> None:
    assert frame["id"].is_unique and frame["id"].is_monotonic_increasing
    assert set(frame["target"].unique()) == {0, 1}
    for column in FEATURE_COLUMNS:
        values = frame[column]
        if column.endswith("_bin"):
            assert set(values.unique()) <= {0, 1}, column
        if column.endswith("_cat"):
            assert pd.api.types.is_integer_dtype(values), column
    assert frame["ps_car_11_cat"].between(1, 104).all()
    assert frame["ps_reg_01"].between(0, 0.9).all() and frame["ps_calc_01"].between(0, 0.9).all()
    assert frame["ps_car_13"].between(0.25, 3.72).all()
    one_hot = frame[["ps_ind_06_bin", "ps_ind_07_bin", "ps_ind_08_bin", "ps_ind_09_bin"]].sum(axis=1)
    assert (one_hot == 1).all()


def test_positive_rate_is_about_3_6_percent_at_any_signal(frame: pd.DataFrame) -> None:
    assert 0.031 < frame["target"].mean() < 0.042
    for signal in (0.0, 2.0):
        assert 0.031 < generate(20000, seed=1, signal=signal)["target"].mean() < 0.042


def test_missing_values_are_minus_one_where_the_original_has_them(frame: pd.DataFrame) -> None:
    with_missing = {c for c in FEATURE_COLUMNS if (frame[c] == -1).any()}
    assert with_missing <= set(MISSING_RATES)
    assert {"ps_car_03_cat", "ps_car_05_cat", "ps_reg_03", "ps_car_14", "ps_car_07_cat"} <= with_missing
    for column in ("ps_car_03_cat", "ps_car_05_cat", "ps_reg_03", "ps_car_14"):
        assert abs((frame[column] == -1).mean() - MISSING_RATES[column]) < 0.02, column
    assert ((frame[FEATURE_COLUMNS] >= -1).all()).all()
    assert not frame.isna().any().any()


def test_same_arguments_same_frame_and_other_seed_another() -> None:
    pd.testing.assert_frame_equal(generate(300, seed=7, signal=1.0), generate(300, seed=7, signal=1.0))
    assert not generate(300, seed=7).equals(generate(300, seed=8))


def test_cli_is_byte_identical_and_reproduces_the_committed_sample(tmp_path: Path,
                                                                   training_dir: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    for out in (first, second):
        assert generate_data.main(["--rows", "20000", "--seed", "42", "--out", str(out)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == (training_dir / "data" / "porto_seguro_sample.csv").read_bytes()


def test_committed_sample_is_small(training_dir: Path) -> None:
    sample = training_dir / "data" / "porto_seguro_sample.csv"
    assert sample.stat().st_size < 4_000_000
    assert len(pd.read_csv(sample, usecols=["id"])) == 20000


def test_calc_features_carry_no_signal(frame: pd.DataFrame) -> None:
    columns = {c: frame[c].to_numpy() for c in FEATURE_COLUMNS}
    shuffled = dict(columns)
    rng = np.random.default_rng(0)
    for column in FEATURE_COLUMNS:
        if column.startswith("ps_calc_"):
            shuffled[column] = rng.permutation(columns[column])
    np.testing.assert_array_equal(latent_score(columns), latent_score(shuffled))
    correlations = frame[FEATURE_COLUMNS].corrwith(frame["target"]).abs()
    assert correlations[[c for c in FEATURE_COLUMNS if c.startswith("ps_calc_")]].max() < 0.03
    assert correlations[["ps_car_13", "ps_ind_17_bin"]].min() > 0.04
    rate = frame.groupby(frame["ps_ind_05_cat"] != 0)["target"].mean()
    assert rate[True] > 1.3 * rate[False]


def _auc(signal: float) -> float:
    data = split_data(generate(10000, seed=11, signal=signal))
    # One thread: on a busy shared agent LightGBM's OpenMP threads make small trainings several times slower.
    parameters = dict(default_parameters(learning_rate=0.1), num_threads=1)
    return get_model_metrics(train_model(data, parameters), data)["auc"]


def test_signal_multiplier_makes_better_data() -> None:
    no_signal, default, strong = _auc(0.0), _auc(1.0), _auc(2.0)
    assert no_signal < 0.6
    assert default > 0.62
    assert strong > default + 0.08


@pytest.mark.parametrize("arguments", [["--rows", "0"], ["--signal", "-1"], []])
def test_cli_rejects_bad_arguments(arguments: list[str], tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "x.csv")] if arguments else []
    with pytest.raises(SystemExit) as exit_info:
        generate_data.main(arguments + out)
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.csv").exists()


def test_generate_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="rows"):
        generate(0)
    with pytest.raises(ValueError, match="signal"):
        generate(10, signal=-0.5)
