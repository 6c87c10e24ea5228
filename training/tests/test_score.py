"""Tests of the Azure ML scoring entry script (training/scoring/score.py), in-process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import lightgbm
import numpy as np
import pandas as pd
import pytest

import score


@pytest.fixture()
def loaded(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[lightgbm.Booster]:
    """score.init() on a model registered as a folder, nested one level down like Azure ML does."""
    nested = tmp_path / "azureml-models" / "safe-driver-model" / "3" / "model"
    shutil.copytree(model_dir, nested)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "azureml-models" / "safe-driver-model" / "3"))
    score.init()
    yield lightgbm.Booster(model_file=str(model_dir / "model.lgb"))
    score.model, score.feature_names = None, []


def _rows(frame: pd.DataFrame, count: int) -> pd.DataFrame:
    return frame.drop(columns=["id", "target"]).head(count)


def test_init_loads_the_booster_and_its_feature_names(loaded: lightgbm.Booster,
                                                      small_frame: pd.DataFrame) -> None:
    assert score.model is not None
    assert score.feature_names == loaded.feature_name() == list(small_frame.columns[2:])


def test_sample_request_gets_one_probability_per_row(loaded: lightgbm.Booster, training_dir: Path) -> None:
    body = (training_dir / "scoring" / "sample-request.json").read_text()
    rows = json.loads(body)["data"]
    assert 2 <= len(rows) <= 3 and all(set(row) == set(score.feature_names) for row in rows)
    result = score.run(body)
    assert set(result) == {"predictions"}
    assert len(result["predictions"]) == len(rows)
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in result["predictions"])
    expected = loaded.predict(pd.DataFrame(rows)[score.feature_names])
    np.testing.assert_allclose(result["predictions"], expected)


def test_dict_rows_and_list_rows_agree_with_the_booster(loaded: lightgbm.Booster,
                                                        small_frame: pd.DataFrame) -> None:
    rows = _rows(small_frame, 5)
    as_dicts = score.run(json.dumps({"data": rows.to_dict("records")}))
    as_lists = score.run(json.dumps({"data": rows.values.tolist()}).encode())
    assert as_dicts == as_lists
    np.testing.assert_allclose(as_dicts["predictions"], loaded.predict(rows))
    assert len(set(as_dicts["predictions"])) > 1


def test_absent_and_null_features_count_as_missing(loaded: lightgbm.Booster,
                                                   small_frame: pd.DataFrame) -> None:
    row = _rows(small_frame, 1).iloc[0].to_dict()
    partial = {name: value for name, value in row.items() if name not in ("ps_car_13", "ps_reg_03")}
    with_null = dict(row, ps_car_13=None, ps_reg_03=None)
    explicit = [-1.0 if name in ("ps_car_13", "ps_reg_03") else row[name] for name in score.feature_names]
    results = [score.run(json.dumps({"data": [body]})) for body in (partial, with_null, explicit)]
    assert results[0] == results[1] == results[2]
    assert results[0]["predictions"][0] == pytest.approx(loaded.predict(np.array([explicit]))[0])


@pytest.mark.parametrize("body, expected", [
    ("not json", "not valid JSON"),
    (json.dumps([1, 2]), '{"data"'),
    (json.dumps({"rows": []}), '{"data"'),
    (json.dumps({"data": []}), "non-empty list"),
    (json.dumps({"data": [[1, 2, 3]]}), "has 3 values; expected 57"),
    (json.dumps({"data": [{"ps_car_13": 1.0, "ps_car_99": 2}]}), "unknown feature(s): ps_car_99"),
    (json.dumps({"data": [{"ps_car_13": "high"}]}), "feature 'ps_car_13' must be a number"),
    (json.dumps({"data": [{"ps_car_13": True}]}), "must be a number"),
    (json.dumps({"data": ["row"]}), "row 0 must be an object"),
])
def test_malformed_requests_return_one_line_errors(loaded: lightgbm.Booster, body: str,
                                                   expected: str) -> None:
    result = score.run(body)
    assert set(result) == {"error"}
    assert expected in result["error"]
    assert "\n" not in result["error"]


def test_run_before_init_returns_an_error() -> None:
    assert "not loaded" in score.run(json.dumps({"data": [[0] * 57]}))["error"]


def test_init_without_a_model_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no model.lgb or model.txt found in the model folder {tmp_path}"):
        score.init()


def test_a_plain_model_txt_folder_still_loads(model_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Models registered before the MLflow format hold model.txt only."""
    shutil.copy(model_dir / "model.lgb", tmp_path / "model.txt")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    try:
        score.init()
        assert score.find_model_file(tmp_path).name == "model.txt" and score.model is not None
    finally:
        score.model, score.feature_names = None, []
