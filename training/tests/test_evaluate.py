"""Tests of the train and evaluate CLIs the pipeline components call (train.py main, evaluate.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightgbm
import pandas as pd
import pytest

import evaluate
import train


def _one_line_error(captured: pytest.CaptureFixture[str]) -> str:
    err = captured.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_train_cli_writes_a_lightgbm_text_model(model_dir: Path, small_frame: pd.DataFrame) -> None:
    model_file = model_dir / "model.lgb"
    assert model_file.read_text().startswith("tree")
    booster = lightgbm.Booster(model_file=str(model_file))
    assert booster.feature_name() == list(small_frame.columns[2:])
    assert 0 < booster.num_trees() <= train.NUM_BOOST_ROUND


def test_train_cli_passes_its_parameters(small_csv: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--training-data", str(small_csv), "--model-output", str(tmp_path),
                       "--learning-rate", "0.3", "--num-leaves", "7", "--min-data-in-leaf", "50",
                       "--feature-fraction", "0.5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "validation auc" in out and "model.lgb" in out
    text = (tmp_path / "model.lgb").read_text()
    for expected in ("[learning_rate: 0.3]", "[num_leaves: 7]", "[min_data_in_leaf: 50]",
                     "[feature_fraction: 0.5]", "[seed: 3]", "[objective: binary]"):
        assert expected in text


def test_evaluate_cli_scores_the_held_out_fifth(model_dir: Path, small_csv: Path, small_frame: pd.DataFrame,
                                                tmp_path: Path) -> None:
    assert evaluate.main(["--model", str(model_dir), "--test-data", str(small_csv),
                          "--metrics-output", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"auc", "accuracy", "log_loss"}  # model quality only; counts are not metrics
    assert all(isinstance(value, float) for value in metrics.values())
    _, holdout = train.split_holdout(small_frame)
    assert len(holdout) == len(small_frame) // 5
    assert holdout["target"].sum() == pytest.approx(small_frame["target"].sum() / 5, abs=1)  # stratified
    booster = lightgbm.Booster(model_file=str(model_dir / "model.lgb"))
    expected = train.roc_auc_score(holdout["target"], booster.predict(holdout.drop(columns=["id", "target"])))
    assert metrics["auc"] == pytest.approx(expected)
    assert 0.65 < metrics["auc"] <= 1.0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["log_loss"] > 0


def test_evaluate_metrics_of_a_known_model() -> None:
    class Perfect:
        @staticmethod
        def predict(data: pd.DataFrame) -> list[float]:
            return [0.9 if value > 2 else 0.1 for value in data["x"]]

    frame = pd.DataFrame({"id": range(10), "target": [0, 0, 0, 1, 1] * 2, "x": [0, 1, 2, 3, 4] * 2})
    metrics = evaluate.evaluate(Perfect(), train.split_data(frame))
    assert metrics["auc"] == 1.0 and metrics["accuracy"] == 1.0 and "rows" not in metrics


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "no_target", "text_feature"])
def test_train_cli_bad_data_is_one_clear_line(kind: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    if kind == "folder":
        path = tmp_path
    elif kind == "empty":
        path.write_text("")
    elif kind == "no_target":
        pd.DataFrame({"id": [1, 2], "x": [3, 4]}).to_csv(path, index=False)
    elif kind == "text_feature":
        pd.DataFrame({"id": range(20), "target": [0, 1] * 10, "x": ["a"] * 20}).to_csv(path, index=False)
    assert train.main(["--training-data", str(path), "--model-output", str(tmp_path / "m")]) == 1
    line = _one_line_error(capsys)
    assert str(path) in line
    assert not (tmp_path / "m" / "model.lgb").exists()


def test_evaluate_cli_without_a_model_is_one_clear_line(small_csv: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--model", str(tmp_path / "none"), "--test-data", str(small_csv),
                          "--metrics-output", str(tmp_path / "out")]) == 1
    assert "no model.lgb (or model.txt)" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_evaluate_cli_with_other_features_is_one_clear_line(model_dir: Path, small_frame: pd.DataFrame,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fewer.csv"
    small_frame.drop(columns=["ps_car_13"]).to_csv(path, index=False)
    assert evaluate.main(["--model", str(model_dir), "--test-data", str(path),
                          "--metrics-output", str(tmp_path / "out")]) == 1
    assert "ps_car_13" in _one_line_error(capsys)


def test_evaluate_cli_missing_data_is_one_clear_line(model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--model", str(model_dir), "--test-data", str(tmp_path / "nope.csv"),
                          "--metrics-output", str(tmp_path / "out")]) == 1
    assert "not found" in _one_line_error(capsys)


@pytest.mark.slow
def test_train_script_as_a_process_fails_without_traceback(training_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(training_dir / "src" / "train.py"), "--training-data", str(tmp_path / "x.csv"),
         "--model-output", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: data file not found: {tmp_path / 'x.csv'}"]


def test_the_held_out_rows_are_never_trained_on(small_frame: pd.DataFrame) -> None:
    development, holdout = train.split_holdout(small_frame)
    assert set(development["id"]).isdisjoint(holdout["id"])
    assert len(development) + len(holdout) == len(small_frame)
    train_set, valid_set = train.split_data(development)
    assert len(train_set.data) + len(valid_set.data) == len(development)  # early stopping uses development rows


def test_early_stopping_ignores_gains_the_validation_set_cannot_resolve() -> None:
    small, large = [1] * 100 + [0] * 2_900, [1] * 10_000 + [0] * 290_000
    assert train.auc_noise(small) == pytest.approx(0.0294, abs=0.001)
    assert train.auc_noise(large) < train.auc_noise(small) / 9  # 100x the rows: a 10x finer threshold
    assert train.auc_noise([0, 0, 0]) == 0.0


def test_num_threads_zero_means_every_available_core() -> None:
    assert train.default_parameters(num_threads=0)["num_threads"] == train.available_cores() >= 1
    assert train.default_parameters(num_threads=3)["num_threads"] == 3


def test_the_model_folder_is_an_mlflow_model(model_dir: Path, small_frame: pd.DataFrame) -> None:
    import mlflow.lightgbm
    import mlflow.pyfunc

    booster = mlflow.lightgbm.load_model(str(model_dir))
    features = small_frame.drop(columns=["id", "target"]).head(20)
    served = mlflow.pyfunc.load_model(str(model_dir)).predict(features)
    assert list(served) == pytest.approx(list(booster.predict(features)))
    assert (model_dir / "MLmodel").read_text().count("lightgbm") >= 2


@pytest.mark.slow  # creates an MLflow store (seconds)
def test_train_and_evaluate_log_to_mlflow_inside_a_job(small_csv: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "safe-driver")
    assert train.main(["--training-data", str(small_csv), "--model-output", str(tmp_path / "m"),
                       "--learning-rate", "0.1"]) == 0
    assert evaluate.main(["--model", str(tmp_path / "m"), "--test-data", str(small_csv),
                          "--metrics-output", str(tmp_path / "out")]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("safe-driver").experiment_id],
                              order_by=["attributes.start_time ASC"])
    trained, evaluated = runs[0].data, runs[1].data
    assert set(trained.metrics) == {"valid_auc"} and trained.params["learning_rate"] == "0.1"
    assert trained.params["rows"] == "4000"
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert evaluated.metrics == pytest.approx(written)  # what studio shows is what the gate reads
    assert evaluated.params["holdout_rows"] == "800"


def test_the_chunked_loader_reads_what_pandas_reads(small_csv: Path, small_frame: pd.DataFrame,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "CHUNK_ROWS", 999)  # several chunks, the last one short
    features, labels, names = train.load_arrays(small_csv)
    assert features.dtype == "float32" and features.shape == (len(small_frame), small_frame.shape[1] - 2)
    assert names == list(small_frame.columns[2:])
    assert (features == small_frame[names].to_numpy(dtype="float32")).all()
    assert (labels == small_frame["target"].to_numpy()).all()
    train_set, valid_set = train.development_datasets(features, labels, names)
    expected_train, expected_valid = train.split_data(train.split_holdout(small_frame)[0])
    assert (valid_set.data == expected_valid.data.to_numpy(dtype="float32")).all()
    assert len(train_set.data) == len(expected_train.data)
