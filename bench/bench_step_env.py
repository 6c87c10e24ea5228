"""The step environment's cost on the sample: `amlops submit --no-reuse` in the component's cached
environment (built on the first run, a cache hit afterwards) against the same with --use-current-env,
alternated so both see the same machine load. Prints the ratio; the first build is reported separately."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 3


def timed(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "amlops", *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        ws = ("--workspace", str(Path(folder) / "ws"))
        timed("publish", "training/pipeline.yml", *ws)
        first = timed("submit", "safe-driver-training", "--no-reuse", *ws)  # builds the environment if needed
        built, current = [], []
        for _ in range(ROUNDS):
            built.append(timed("submit", "safe-driver-training", "--no-reuse", *ws))
            current.append(timed("submit", "safe-driver-training", "--no-reuse", "--use-current-env", *ws))
    b, c = statistics.median(built), statistics.median(current)
    print(f"first run (builds the environment unless cached): {first:6.2f} s")
    print(f"--use-current-env (baseline):                     {c:6.2f} s (median of {ROUNDS})")
    print(f"component environment, cache hit:                 {b:6.2f} s  ratio {b / c:.2f}x  (goal about 1.0x)")


if __name__ == "__main__":
    main()
