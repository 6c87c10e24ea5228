"""The launcher on a fresh agent (empty tools directory, empty pip and uv caches) and on a warm one.

Each cold run starts the staged task's launcher with an empty agent tools directory and empty pip and uv
caches, and times it to the task's first output line (the environment created and amlops installed).
Installers compared in the same run, the pip install being the baseline of the ratios:

  pip        AMLOPS_USE_UV=false: python -m venv, pip install (what a hosted agent without uv got before)
  uv         uv on PATH
  bootstrap  no uv on PATH: the launcher fetches uv from the index with pip, then installs with uv

for the smoke test (no extras) and for a `target: local` task (the `local` extras: lightgbm, pandas, ...).
Warm: the same environment reused, as a ratio of the floor `node -e ''` + `python -c ''`. The index is the
machine's default (PyPI); pip.conf files are set aside (PIP_CONFIG_FILE=os.devnull), as uv does not read them.

    python bench/bench_launcher.py [--warm-runs 5] [--modes pip,uv,bootstrap] [--tasks smoke,local] [--keep]
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
TASKS = {"smoke": ("AmlSmokeTest", {"INPUT_TARGET": "local", "INPUT_SCORINGURI": ""}),
         "local": ("AmlRunPipeline", {"INPUT_TARGET": "local", "INPUT_PIPELINENAME": ""})}


def first_line_time(launcher: Path, env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Seconds to the task's banner line and the installer the launcher reported."""
    started = time.perf_counter()
    process = subprocess.Popen(["node", str(launcher)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    first, installer, failure = None, "reused", ""
    for line in process.stdout:
        if first is None and line.startswith(BANNER):
            first = time.perf_counter() - started
        if "the Python environment is ready" in line:
            installer = line.rsplit(", ", 1)[-1].strip(" )\n")
        if line.startswith("##vso[task.complete result=Failed") and first is None:
            failure = line.strip()
    process.wait()
    if first is None:
        raise SystemExit(f"the task printed no banner: {failure or 'run it by hand to see why'}")
    return first, installer


def median_of(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def without_uv(path: str) -> str:
    return os.pathsep.join(folder for folder in path.split(os.pathsep)
                           if not (Path(folder) / ("uv.exe" if os.name == "nt" else "uv")).exists())


def agent_environment(root: Path, sources: Path, mode: str, task_inputs: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "AGENT_", "AMLOPS_", "PIP_", "UV_"))}
    env.update({"AGENT_TOOLSDIRECTORY": str(root / "tools"), "AGENT_TEMPDIRECTORY": str(root / "temp"),
                "BUILD_SOURCESDIRECTORY": str(sources), "SYSTEM_DEFAULTWORKINGDIRECTORY": str(sources),
                "PIP_CONFIG_FILE": os.devnull, "PIP_CACHE_DIR": str(root / "pip-cache"),
                "UV_CACHE_DIR": str(root / "uv-cache"), **task_inputs})
    uv_dir = Path(sys.executable).parent
    path = without_uv(env.get("PATH", ""))
    env["PATH"] = f"{uv_dir}{os.pathsep}{path}" if mode == "uv" else f"{path}{os.pathsep}{uv_dir}"
    if mode == "bootstrap":
        env["PATH"] = without_uv(env["PATH"])
    if mode == "pip":
        env["AMLOPS_USE_UV"] = "false"
    return env


def cold(root: Path, sources: Path, wheel: Path, mode: str, task: str) -> tuple[float, str, Path, dict]:
    name, inputs = TASKS[task]
    case = root / f"{mode}-{task}"
    (case / "temp").mkdir(parents=True)
    launcher = stage_task(name, case / "tasks", wheel) / "launcher.js"
    env = agent_environment(case, sources, mode, inputs)
    seconds, installer = first_line_time(launcher, env, sources)
    return seconds, installer, launcher, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--modes", default="pip,uv,bootstrap")
    parser.add_argument("--tasks", default="smoke,local")
    parser.add_argument("--keep", action="store_true", help="keep the temporary agent folders")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    try:
        sources = root / "s"
        sources.mkdir()
        wheel = build_wheel(root / "wheel")
        results: dict[tuple[str, str], float] = {}
        warm_case = None
        for task in args.tasks.split(","):
            for mode in args.modes.split(","):
                seconds, installer, launcher, env = cold(root, sources, wheel, mode, task)
                results[(mode, task)] = seconds
                print(f"cold {task:<6} {mode:<10} {seconds:6.2f} s to first output (installed with {installer})",
                      flush=True)
                warm_case = warm_case or (launcher, env)
        for task in args.tasks.split(","):
            base = results.get(("pip", task))
            for mode in args.modes.split(","):
                ratio = f"{results[(mode, task)] / base:.2f}x pip" if base else ""
                goal = "met" if results[(mode, task)] < 20 else "NOT met"
                print(f"  {task:<6} {mode:<10} {results[(mode, task)]:6.2f} s  {ratio:<10} goal < 20 s: {goal}")
        launcher, env = warm_case
        warm = [first_line_time(launcher, env, sources)[0] for _ in range(args.warm_runs)]
        node = median_of(["node", "-e", ""], args.warm_runs)
        python = median_of([sys.executable, "-c", ""], args.warm_runs)
        warm_median = statistics.median(warm)
        print(f"warm start to first output: median {warm_median:.3f} s, min {min(warm):.3f} s over {len(warm)} runs")
        print(f"floor: node -e '' {node:.3f} s + python -c '' {python:.3f} s = {node + python:.3f} s; "
              f"warm / floor: {warm_median / (node + python):.2f}x; goal warm < 1 s: "
              f"{'met' if warm_median < 1 else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
