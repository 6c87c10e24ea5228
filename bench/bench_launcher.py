"""Time from starting the AmlSmokeTest launcher to the task's first output line, cold and warm.

Cold: an empty agent tools directory, so the launcher creates the task's Python environment and installs
the amlops wheel (uv when on PATH, else pip). Warm: the same environment reused. The warm time is also
given as a ratio of `node -e ''` plus `python -c ''` measured in the same run, which is the floor any
Node launcher starting Python pays. Goal: warm under 1 s.

    python bench/bench_launcher.py [--warm-runs 7] [--pip] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amlops.packaging.stage import build_wheel, stage_task

BANNER = "amlops "


def first_line_time(launcher: Path, env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Seconds to the task's banner line, seconds to exit, and the installer the launcher reported."""
    started = time.perf_counter()
    process = subprocess.Popen(["node", str(launcher)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    first, installer = None, "reused"
    for line in process.stdout:
        if first is None and line.startswith(BANNER):
            first = time.perf_counter() - started
        if "preparing the Python environment" in line:
            installer = "uv" if ", uv)" in line else "pip"
    process.wait()
    if first is None:
        raise SystemExit("the task printed no banner; run it by hand to see why")
    return first, time.perf_counter() - started, installer


def median_of(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def agent_environment(root: Path, sources: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "AGENT_", "AMLOPS_"))}
    env.update({"AGENT_TOOLSDIRECTORY": str(root / "tools"), "AGENT_TEMPDIRECTORY": str(root / "temp"),
                "BUILD_SOURCESDIRECTORY": str(sources), "SYSTEM_DEFAULTWORKINGDIRECTORY": str(sources),
                "INPUT_TARGET": "local", "INPUT_SCORINGURI": ""})
    uv_dir = Path(sys.executable).parent
    if (uv_dir / "uv").exists() or (uv_dir / "uv.exe").exists():
        env["PATH"] = f"{uv_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary agent folders")
    parser.add_argument("--pip", action="store_true", help="make the launcher install with pip, not uv")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    try:
        sources = root / "s"
        sources.mkdir()
        (root / "temp").mkdir()
        launcher = stage_task("AmlSmokeTest", root / "tasks", build_wheel(root / "wheel")) / "launcher.js"
        env = agent_environment(root, sources)
        if args.pip:
            env["AMLOPS_USE_UV"] = "false"
        cold, cold_total, installer = first_line_time(launcher, env, sources)
        warm = [first_line_time(launcher, env, sources)[0] for _ in range(args.warm_runs)]
        warm_median = statistics.median(warm)
        node = median_of(["node", "-e", ""], args.warm_runs)
        python = median_of([sys.executable, "-c", ""], args.warm_runs)
        print(f"cold start to first output: {cold:.2f} s (installer: {installer}; task ended at {cold_total:.2f} s)")
        print(f"warm start to first output: median {warm_median:.3f} s, min {min(warm):.3f} s over {len(warm)} runs")
        print(f"floor: node -e '' {node:.3f} s + python -c '' {python:.3f} s = {node + python:.3f} s")
        print(f"warm / floor: {warm_median / (node + python):.2f}x; goal warm < 1 s: "
              f"{'met' if warm_median < 1 else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
