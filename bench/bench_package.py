"""`amlops package` against tfx-cli 0.23.1 on the same manifest, in one run.

Both are timed as the commands a pipeline runs (interpreter start-up included), median of several runs:
`amlops package --wheel W` (stage the task folders, validate, write the manifests, zip) against
`tfx extension create` on the root `amlops package --stage-dir` staged from the same sources. The full
`amlops package`, which also builds the amlops wheel with setuptools, is timed once. Prints seconds, the ratio
and both package sizes. tfx-cli: `npm ci --prefix tests/packaging`.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TFX = REPO / "tests" / "packaging" / "node_modules" / ".bin" / "tfx"
RUNS = 5


def amlops(*args: str | Path) -> list[str]:
    script = Path(sys.executable).with_name("amlops")
    return ([str(script)] if script.exists() else [sys.executable, "-m", "amlops"]) + ["package", *map(str, args)]


def timed(command: list[str], cwd: Path = REPO) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def only_vsix(folder: Path) -> Path:
    [vsix] = folder.glob("*.vsix")
    return vsix


def main() -> None:
    if not TFX.exists():
        sys.exit("tfx-cli is missing: npm ci --prefix tests/packaging")
    with tempfile.TemporaryDirectory(prefix="bench-package-") as folder:
        work = Path(folder)
        os.environ["AMLOPS_CACHE_DIR"] = str(work / "cache")  # an empty cache: the first build fills it
        full = timed(amlops("--out", work / "full"))
        with zipfile.ZipFile(only_vsix(work / "full")) as archive:  # the wheel the full build made
            name = next(n for n in archive.namelist() if n.endswith(".whl"))
            wheel = work / Path(name).name
            wheel.write_bytes(archive.read(name))
        subprocess.run(amlops("--wheel", wheel, "--out", work / "staged", "--stage-dir", work / "stage"), cwd=REPO,
                       check=True, capture_output=True)
        commands = {  # run in turn, RUNS times, so a change in the machine's load hits all of them alike
            "tfx": lambda run: [str(TFX), "extension", "create", "--root", str(work / "stage"),
                                "--output-path", f"{work / f'tfx{run}'}/", "--no-prompt"],
            "wheel given": lambda run: amlops("--wheel", wheel, "--out", work / f"ours{run}"),
            "wheel built": lambda run: amlops("--no-cache", "--out", work / f"build{run}"),
            "wheel cached": lambda run: amlops("--out", work / f"cached{run}"),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(RUNS):
            for name, command in commands.items():
                times[name].append(timed(command(run)))
        theirs, ours, building, cached = (statistics.median(times[name]) for name in commands)
        ratio = {name: statistics.median(t / base for t, base in zip(times[name], times["tfx"])) for name in times}
        our_size = only_vsix(work / "ours0").stat().st_size
        their_size = only_vsix(work / "tfx0").stat().st_size
        shutil.rmtree(work / "stage")
    rows = [(f"tfx extension create, median of {RUNS}", theirs, "same staged root"),
            (f"amlops package --wheel W, median of {RUNS}", ours, f"{ratio['wheel given']:.2f}x tfx's time"),
            (f"amlops package, wheel built, median of {RUNS}", building,
             f"{ratio['wheel built']:.2f}x tfx's time; goal < 0.5x: "
             f"{'met' if ratio['wheel built'] < 0.5 else 'NOT met'}"),
            (f"amlops package, wheel cached, median of {RUNS}", cached,
             f"{ratio['wheel cached']:.2f}x tfx's time; goal < 0.5x: "
             f"{'met' if ratio['wheel cached'] < 0.5 else 'NOT met'}"),
            ("amlops package, first build (fills the cache)", full, "once")]
    for label, seconds, note in rows:
        print(f"{label:<44} {seconds:6.2f} s  ({note})")
    print(f"{'package size':<44} amlops {our_size / 1024:.0f} KiB, tfx {their_size / 1024:.0f} KiB "
          f"({our_size} vs {their_size} bytes)")


if __name__ == "__main__":
    main()
