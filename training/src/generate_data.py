"""Deterministic generator of a synthetic dataset shaped like Porto Seguro's Safe Driver Prediction data.

The columns, value ranges and missing-value markers (-1) follow the original Kaggle competition's
train.csv: `id`, `target` (about 3.6 % positives) and 57 anonymised features (ps_ind_*, ps_reg_*,
ps_car_*, ps_calc_*). The target comes from a latent logistic model over some ps_ind_*, ps_reg_* and
ps_car_* features; the ps_calc_* features carry no signal at all, as in the original.

    python generate_data.py --out ../data/porto_seguro_sample.csv --rows 20000 --seed 42 --signal 1.0

Same arguments give a byte-identical CSV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

FULL_ROWS = 595212
POSITIVE_RATE = 0.0364
# The "true world" (per-category effects of ps_car_11_cat) is fixed; --seed only changes the sample drawn.
WORLD_SEED = 20171001

IND_COLUMNS = [
    "ps_ind_01", "ps_ind_02_cat", "ps_ind_03", "ps_ind_04_cat", "ps_ind_05_cat", "ps_ind_06_bin",
    "ps_ind_07_bin", "ps_ind_08_bin", "ps_ind_09_bin", "ps_ind_10_bin", "ps_ind_11_bin", "ps_ind_12_bin",
    "ps_ind_13_bin", "ps_ind_14", "ps_ind_15", "ps_ind_16_bin", "ps_ind_17_bin", "ps_ind_18_bin",
]
REG_COLUMNS = ["ps_reg_01", "ps_reg_02", "ps_reg_03"]
CAR_COLUMNS = [f"ps_car_{i:02d}_cat" for i in range(1, 12)] + [f"ps_car_{i}" for i in range(11, 16)]
CALC_COLUMNS = [f"ps_calc_{i:02d}" for i in range(1, 15)] + [f"ps_calc_{i}_bin" for i in range(15, 21)]
FEATURE_COLUMNS = IND_COLUMNS + REG_COLUMNS + CAR_COLUMNS + CALC_COLUMNS
COLUMNS = ["id", "target"] + FEATURE_COLUMNS

# Share of -1 (missing) per column, close to the original train.csv.
MISSING_RATES = {
    "ps_ind_02_cat": 0.0004, "ps_ind_04_cat": 0.0002, "ps_ind_05_cat": 0.0098, "ps_reg_03": 0.181,
    "ps_car_01_cat": 0.0002, "ps_car_02_cat": 0.00001, "ps_car_03_cat": 0.691, "ps_car_05_cat": 0.448,
    "ps_car_07_cat": 0.0193, "ps_car_09_cat": 0.001, "ps_car_11": 0.00001, "ps_car_12": 0.000002,
    "ps_car_14": 0.0716,
}
FLOAT_DECIMALS = 4

Arrays = dict[str, np.ndarray]


def _choice(rng: np.random.Generator, n: int, values: list[int], weights: list[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(np.asarray(values, dtype=np.int64), size=n, p=p / p.sum())


def _tenths(rng: np.random.Generator, n: int, low: int, high: int, weights: list[float]) -> np.ndarray:
    """Values low/10 .. high/10 in steps of 0.1 (like ps_reg_01, ps_calc_01)."""
    return _choice(rng, n, list(range(low, high + 1)), weights) / 10.0


def _ind_features(rng: np.random.Generator, n: int) -> Arrays:
    cols: Arrays = {
        "ps_ind_01": _choice(rng, n, list(range(8)), [31, 24, 13, 7, 5, 12, 5, 3]),
        "ps_ind_02_cat": _choice(rng, n, [1, 2, 3, 4], [72, 21, 5, 2]),
        "ps_ind_03": _choice(rng, n, list(range(12)), [5, 7, 12, 14, 11, 10, 11, 8, 7, 5, 5, 5]),
        "ps_ind_04_cat": _choice(rng, n, [0, 1], [58, 42]),
        "ps_ind_05_cat": _choice(rng, n, list(range(7)), [890, 14, 7, 14, 30, 3, 35]),
    }
    one_hot = _choice(rng, n, [6, 7, 8, 9], [39, 26, 16, 19])
    for i in (6, 7, 8, 9):
        cols[f"ps_ind_{i:02d}_bin"] = (one_hot == i).astype(np.int64)
    for i, rate in zip((10, 11, 12, 13), (0.0004, 0.0017, 0.0094, 0.0009)):
        cols[f"ps_ind_{i}_bin"] = (rng.random(n) < rate).astype(np.int64)
    cols["ps_ind_14"] = sum(cols[f"ps_ind_{i}_bin"] for i in (10, 11, 12, 13))
    cols["ps_ind_15"] = rng.integers(0, 14, n)
    group = _choice(rng, n, [16, 17, 18, 0], [62, 12, 15, 11])
    for i in (16, 17, 18):
        cols[f"ps_ind_{i}_bin"] = (group == i).astype(np.int64)
    return cols


def _reg_features(rng: np.random.Generator, n: int, vehicle: np.ndarray) -> Arrays:
    reg_01 = _tenths(rng, n, 0, 9, [5, 5, 4, 5, 4, 5, 6, 14, 20, 32])
    reg_02 = np.clip(np.round(rng.gamma(1.6, 0.28, n) * 10) / 10, 0.0, 1.8)
    k = np.clip(np.round(np.exp(rng.normal(7.0 + 0.25 * vehicle, 0.45))), 6, 25000)
    return {"ps_reg_01": reg_01, "ps_reg_02": reg_02, "ps_reg_03": np.sqrt(k) / 40.0}


def _car_categoricals(rng: np.random.Generator, n: int) -> Arrays:
    return {
        "ps_car_01_cat": _choice(rng, n, list(range(12)), [1, 1, 1, 1, 4, 3, 11, 30, 3, 3, 7, 35]),
        "ps_car_02_cat": _choice(rng, n, [0, 1], [17, 83]),
        "ps_car_03_cat": _choice(rng, n, [0, 1], [35, 65]),
        "ps_car_04_cat": _choice(rng, n, list(range(10)), [834, 54, 40, 6, 1, 6, 3, 2, 14, 40]),
        "ps_car_05_cat": _choice(rng, n, [0, 1], [22, 78]),
        "ps_car_06_cat": _choice(rng, n, list(range(18)),
                                 [19, 20, 1, 2, 6, 1, 3, 4, 1, 3, 8, 22, 1, 1, 10, 6, 1, 1]),
        "ps_car_07_cat": _choice(rng, n, [0, 1], [5, 95]),
        "ps_car_08_cat": _choice(rng, n, [0, 1], [17, 83]),
        "ps_car_09_cat": _choice(rng, n, list(range(5)), [33, 5, 59, 2, 1]),
        "ps_car_10_cat": _choice(rng, n, [0, 1, 2], [80, 9918, 2]),
        "ps_car_11_cat": np.where(rng.random(n) < 0.15, 104, rng.integers(1, 104, n)),
    }


def _car_numerics(rng: np.random.Generator, n: int, vehicle: np.ndarray) -> Arrays:
    car_12 = np.sqrt(np.clip(np.round(np.exp(rng.normal(2.6 + 0.15 * vehicle, 0.35))), 1, 159)) / 10.0
    car_13 = np.clip(np.exp(rng.normal(-0.25 + 0.18 * vehicle, 0.25)), 0.25, 3.72)
    car_14 = np.sqrt(np.clip(np.round(rng.normal(1400, 300, n)), 100, 4096)) / 100.0
    car_15 = np.sqrt(np.clip(np.round(14 - rng.gamma(1.3, 3.0, n) + 0.6 * vehicle), 0, 14))
    return {
        "ps_car_11": _choice(rng, n, [0, 1, 2, 3], [5, 10, 30, 55]),
        "ps_car_12": car_12, "ps_car_13": car_13, "ps_car_14": car_14, "ps_car_15": car_15,
    }


def _calc_features(rng: np.random.Generator, n: int) -> Arrays:
    cols: Arrays = {f"ps_calc_{i:02d}": _tenths(rng, n, 0, 9, [1] * 10) for i in (1, 2, 3)}
    binomial = {4: (5, 0.47), 5: (6, 0.31), 6: (10, 0.77), 7: (9, 0.33), 9: (7, 0.33)}
    for i, (trials, p) in binomial.items():
        cols[f"ps_calc_{i:02d}"] = rng.binomial(trials, p, n)
    cols["ps_calc_08"] = 2 + rng.binomial(10, 0.72, n)
    poisson = {10: (8.4, 25), 11: (5.4, 19), 12: (1.44, 10), 13: (2.87, 13), 14: (7.5, 23)}
    for i, (lam, top) in poisson.items():
        cols[f"ps_calc_{i}"] = np.clip(rng.poisson(lam, n), 0, top)
    for i, p in zip(range(15, 21), (0.12, 0.63, 0.55, 0.29, 0.35, 0.15)):
        cols[f"ps_calc_{i}_bin"] = (rng.random(n) < p).astype(np.int64)
    return cols


def _add_missing(rng: np.random.Generator, cols: Arrays) -> None:
    """Replace values by -1 at the original's missing rates (in place, fixed column order)."""
    n = len(cols["ps_ind_01"])
    for name, rate in MISSING_RATES.items():
        values = cols[name]
        cols[name] = np.where(rng.random(n) < rate, -1, values).astype(values.dtype)


def _standardise(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values, dtype=float)


def _car_11_effects() -> np.ndarray:
    """Fixed per-category effect of ps_car_11_cat (index = category, 0 .. 104)."""
    return np.random.default_rng(WORLD_SEED).normal(0.0, 0.35, 105)


def latent_score(cols: Arrays) -> np.ndarray:
    """The true risk (a logit up to an intercept) behind the target; centred, before the signal multiplier."""
    car_13 = _standardise(np.log(cols["ps_car_13"]))
    ind_05 = cols["ps_ind_05_cat"]
    score = (
        0.75 * car_13
        + 0.55 * (ind_05 != 0) + 0.25 * (ind_05 == -1)
        + 0.50 * cols["ps_ind_17_bin"] + 0.30 * cols["ps_ind_17_bin"] * car_13
        + 0.25 * cols["ps_ind_07_bin"] - 0.20 * cols["ps_ind_06_bin"]
        + 0.05 * cols["ps_ind_01"] - 0.035 * cols["ps_ind_15"]
        + 0.30 * ((cols["ps_ind_03"] - 4.0) / 4.0) ** 2
        + 0.35 * _standardise(cols["ps_reg_02"]) + 0.15 * _standardise(cols["ps_reg_01"])
        + 0.20 * (cols["ps_reg_03"] == -1)
        + 0.45 * (cols["ps_car_07_cat"] != 1) + 0.30 * (cols["ps_car_04_cat"] > 0)
        + 0.20 * (cols["ps_car_01_cat"] == 9) - 0.15 * (cols["ps_car_01_cat"] == 7)
        + _car_11_effects()[cols["ps_car_11_cat"]]
    )
    return score - score.mean()


def _intercept(score: np.ndarray, rate: float) -> float:
    """Bisection for b such that mean(sigmoid(b + score)) == rate."""
    low, high = -20.0, 20.0
    for _ in range(100):
        mid = (low + high) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(mid + score)))) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _target(rng: np.random.Generator, cols: Arrays, signal: float) -> np.ndarray:
    score = signal * latent_score(cols)
    probability = 1.0 / (1.0 + np.exp(-(_intercept(score, POSITIVE_RATE) + score)))
    return (rng.random(len(score)) < probability).astype(np.int64)


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Increasing ids with gaps, like the original (train and test ids were interleaved)."""
    return 7 + np.cumsum(rng.integers(1, 5, n)) - 1


def generate(rows: int = FULL_ROWS, seed: int = 42, signal: float = 1.0) -> pd.DataFrame:
    """A Porto-Seguro-shaped frame: id, target and the 57 ps_* features; deterministic in its arguments."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if signal < 0:
        raise ValueError(f"signal must be >= 0, got {signal}")
    rng = np.random.default_rng(seed)
    vehicle = rng.normal(0.0, 1.0, rows)
    cols: Arrays = {}
    cols.update(_ind_features(rng, rows))
    cols.update(_reg_features(rng, rows, vehicle))
    cols.update(_car_categoricals(rng, rows))
    cols.update(_car_numerics(rng, rows, vehicle))
    cols.update(_calc_features(rng, rows))
    _add_missing(rng, cols)
    target = _target(rng, cols, signal)
    frame = pd.DataFrame({"id": _ids(rng, rows), "target": target, **cols}, columns=COLUMNS)
    floats = frame.select_dtypes("float").columns
    frame[floats] = frame[floats].round(FLOAT_DECIMALS)
    return frame


def write_csv(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, lineterminator="\n")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help=f"number of rows (default {FULL_ROWS})")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--signal", type=float, default=1.0,
                        help="multiplier on the strength of the target's dependence on the features "
                             "(default 1.0; 0 = no signal)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows must be at least 1, got {args.rows}")
    if args.signal < 0:
        parser.error(f"--signal must be >= 0, got {args.signal}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    frame = generate(args.rows, args.seed, args.signal)
    try:
        write_csv(frame, args.out)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    positives = int(frame["target"].sum())
    print(f"wrote {len(frame)} rows ({positives} positives, {positives / len(frame):.2%}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
