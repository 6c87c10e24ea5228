"""Every figure of issue 19 in one run, each next to the baseline it is compared with, measured in the same run.

    python bench/run_all.py [--rounds N] [--full-train] [--only ROW ...]

Rows: package (amlops package with the wheel built and from its source-keyed cache, vs tfx extension create on
the same staged root), flow (amlops run first / reused, with and without --teardown, vs the two steps run
directly), executor (submit --no-reuse vs the two steps run directly with the same MLflow tracking, and
untracked), reuse (unchanged re-submit vs a first run, and with a 3x bigger input), serving (1 vs 8 clients,
1 worker vs one per core, loaded by wrk when installed; server.log bytes per request), train (full size data
and its peak memory, with --full-train: about a minute), growth (workspace bytes per published version and
per --no-reuse run, a hard-linked file once). Medians of --rounds; the sides of a ratio run in turn so a load
change hits both. A row whose tool is missing is skipped with its reason.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from stat import S_ISREG
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_executor  # noqa: E402
import bench_package  # noqa: E402

TRAINING = REPO / "training"
SCORING = TRAINING / "scoring"
SAMPLE = TRAINING / "data" / "porto_seguro_sample.csv"
PIPELINE = "safe-driver-training"


def row(figure: str, value: str, baseline: str, ratio: str, goal: str) -> None:
    print(f"| {figure} | {value} | {baseline} | {ratio} | {goal} |", flush=True)


def amlops(*args: str | Path) -> list[str]:
    script = Path(sys.executable).with_name("amlops")
    return ([str(script)] if script.exists() else [sys.executable, "-m", "amlops"]) + [str(a) for a in args]


def timed(command: list[str], cwd: Path = REPO, env: dict | None = None) -> float:
    return bench_executor.timed(command, cwd, env)


def pairs(first: Callable[[int], float], second: Callable[[int], float], rounds: int) -> tuple[float, float]:
    """Medians of alternating runs of two measurements."""
    a, b = [], []
    for index in range(rounds):
        a.append(first(index))
        b.append(second(index))
    return statistics.median(a), statistics.median(b)


def du(folder: Path) -> int:
    """Bytes on disk under folder, a file hard-linked from several places (the snapshots' content store) once."""
    sizes = {(stat.st_dev, stat.st_ino): stat.st_size for stat in
             (p.lstat() for p in folder.rglob("*")) if S_ISREG(stat.st_mode)}
    return sum(sizes.values())


def package(work: Path, rounds: int) -> None:
    if not bench_package.TFX.exists():
        row("amlops package vs tfx", "skipped", "", "", "tfx-cli missing: npm ci --prefix tests/packaging")
        return
    env = {**os.environ, "AMLOPS_CACHE_DIR": str(work / "cache")}  # this row's own wheel cache, filled next
    stage = work / "stage"
    subprocess.run(amlops("package", "--out", work / "pkg-stage", "--stage-dir", stage), cwd=REPO, check=True,
                   capture_output=True, env=env)
    tfx = [str(bench_package.TFX), "extension", "create", "--root", str(stage), "--no-prompt", "--output-path"]
    built, theirs = pairs(lambda i: timed(amlops("package", "--no-cache", "--out", work / f"built{i}"), env=env),
                          lambda i: timed([*tfx, f"{work / f'tfx{i}'}/"]), rounds)
    cached, theirs_again = pairs(lambda i: timed(amlops("package", "--out", work / f"cached{i}"), env=env),
                                 lambda i: timed([*tfx, f"{work / f'tfx-again{i}'}/"]), rounds)
    row("`amlops package`, wheel built (--no-cache) vs `tfx extension create`", f"{built:.2f} s",
        f"{theirs:.2f} s", f"{built / theirs:.2f}x", "< 0.5x")
    row("`amlops package`, wheel from the source-keyed cache vs `tfx extension create`", f"{cached:.2f} s",
        f"{theirs_again:.2f} s", f"{cached / theirs_again:.2f}x", "< 0.5x")


def direct_steps(work: Path, index: int) -> float:
    return bench_executor.direct(work / f"direct{index}")


def flow(work: Path, rounds: int) -> None:
    direct = statistics.median(direct_steps(work, 100 + i) for i in range(rounds))
    ws = work / "flow-ws"
    run = amlops("run", TRAINING / "pipeline.yml", "--workspace", ws, "--quiet")
    try:
        first = timed(run)
        reused = statistics.median(timed(run) for _ in range(rounds))
        reused_teardown = timed([*run, "--teardown"])  # the server was running: deploy no-op, then stopped
        after_teardown = statistics.median(timed([*run, "--teardown"]) for _ in range(rounds))
    finally:
        subprocess.run(amlops("deployments", "delete", "safe-driver", "--workspace", ws), capture_output=True)
    row("`amlops run`, first (warm machine)", f"{first:.2f} s", f"steps direct {direct:.2f} s",
        f"{first / direct:.2f}x", "< 10 s")
    row("`amlops run`, reused (server running: deploy no-op)", f"{reused:.2f} s", f"first {first:.2f} s",
        f"{reused / first:.2f}x", "< 2 s")
    row("`amlops run --teardown`, reused, server running before", f"{reused_teardown:.2f} s", f"first {first:.2f} s",
        f"{reused_teardown / first:.2f}x", "< 2 s")
    row("`amlops run --teardown`, reused steps after a teardown", f"{after_teardown:.2f} s", f"first {first:.2f} s",
        f"{after_teardown / first:.2f}x", "(server start)")


def publish(ws: Path) -> None:
    subprocess.run(amlops("publish", TRAINING / "pipeline.yml", "--workspace", ws), check=True, capture_output=True)


def executor(work: Path, rounds: int) -> None:
    ws = work / "exec-ws"
    publish(ws)
    submit = amlops("submit", PIPELINE, "--no-reuse", "--workspace", ws)
    tracking_db = work / "direct-mlflow.db"
    bench_executor.direct(work / "direct-warm", tracking_db)  # the store's tables, as the workspace's first run
    timed(submit)
    samples: dict[str, list[float]] = {"tracked": [], "ours": [], "untracked": []}
    for i in range(rounds):  # in turn, so a change of load hits the three alike
        samples["tracked"].append(bench_executor.direct(work / f"tracked{i}", tracking_db))
        samples["ours"].append(timed(submit))
        samples["untracked"].append(direct_steps(work, 200 + i))
    tracked, ours, untracked = (statistics.median(samples[k]) for k in ("tracked", "ours", "untracked"))
    row("`amlops submit --no-reuse` vs the two steps run directly, both tracked in MLflow", f"{ours:.2f} s",
        f"{tracked:.2f} s", f"{ours / tracked:.2f}x", "< 1.1x")
    row("`amlops submit --no-reuse` vs the two steps run directly, untracked", f"{ours:.2f} s",
        f"{untracked:.2f} s", f"{ours / untracked:.2f}x", "< 1.1x (issue 19's baseline, before MLflow tracking)")
    row("the two steps tracked in MLflow (SQLite store) vs untracked", f"{tracked:.2f} s", f"{untracked:.2f} s",
        f"{tracked / untracked:.2f}x", "(what MLflow tracking costs)")


def reuse(work: Path, rounds: int) -> None:
    submits, firsts = {}, {}
    for copies in (1, 3):
        data = work / f"data-{copies}.csv"
        lines = SAMPLE.read_text().splitlines(keepends=True)
        data.write_text("".join(lines[:1] + lines[1:] * copies))
        ws = work / f"reuse-ws-{copies}"
        publish(ws)
        submits[copies] = amlops("submit", PIPELINE, "--set", f"inputs.training_data={data}", "--workspace", ws)
        firsts[copies] = timed(submits[copies])
    time.sleep(1.1)  # past the hash cache's racy window (hash_cache.RACY_S): the steady state
    for copies in (1, 3):
        timed(submits[copies])
    again = dict(zip((1, 3), pairs(lambda i: timed(submits[1]), lambda i: timed(submits[3]), 2 * rounds)))
    for copies, label in ((1, "sample"), (3, "3x input")):
        size = (work / f"data-{copies}.csv").stat().st_size // 1024
        row(f"unchanged re-submit, {label} ({size} KiB)", f"{again[copies]:.2f} s",
            f"first run {firsts[copies]:.2f} s", f"{again[copies] / firsts[copies]:.3f}x", "< 0.03x")
    row("re-submit time, 3x input vs sample", f"{again[3]:.2f} s", f"{again[1]:.2f} s", f"{again[3] / again[1]:.2f}x",
        "~1.0x (independent of input size)")


def serving(work: Path, rounds: int) -> None:
    from amlops import api
    from amlops.deploy.local.target import default_workers, delete_local
    from amlops.workspace.local.workspace import LocalWorkspace

    ws = LocalWorkspace(work / "serve-ws")
    api.publish(ws, TRAINING / "pipeline.yml")
    run = api.submit(ws, PIPELINE)
    api.register_if_better(ws, run, model_name="driver")
    payload = (SCORING / "sample-request.json").read_bytes()
    requests = 200 * rounds
    many = default_workers()
    deployments = {workers: api.deploy(ws, model_name="driver", model_version=None, deployment_name=f"w{workers}",
                                       scoring_folder=SCORING, workers=workers) for workers in sorted({1, many})}
    samples: dict = {}
    try:
        for _ in range(rounds):  # alternate the servers, so a change of load hits both
            for workers, deployment in deployments.items():
                for clients in (1, 8):
                    log_before, cpu_before = deployment.log_path.stat().st_size, server_cpu_s(deployment.pid)
                    rate, p50, done = load(deployment.scoring_uri, payload, clients, requests // rounds)
                    cpu = (server_cpu_s(deployment.pid) - cpu_before) * 1000 / done
                    log = (deployment.log_path.stat().st_size - log_before) / done
                    samples.setdefault((workers, clients), []).append((rate, p50, cpu, log))
    finally:
        for workers in deployments:
            delete_local(ws, f"w{workers}")
    figures = {key: [statistics.median(column) for column in zip(*values)] for key, values in samples.items()}
    base_rate, base_p50 = figures[1, 1][:2]
    for (workers, clients), (rate, p50, cpu, _) in sorted(figures.items()):
        row(f"serving, {workers} worker(s), {clients} client(s)",
            f"{rate:.0f} req/s, p50 {p50:.1f} ms, server CPU {cpu:.1f} ms/request",
            f"1 worker 1 client {base_rate:.0f} req/s, p50 {base_p50:.1f} ms", f"{rate / base_rate:.2f}x throughput",
            "scales with workers")
    row("server.log bytes per request", f"{figures[many, 8][3]:.0f} B", "", "", "bounded: rotated at 5 MiB, 1 backup")


def server_cpu_s(pid: int) -> float:
    import psutil

    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def load(uri: str, payload: bytes, clients: int, requests: int) -> tuple[float, float, int]:
    """(requests per second, p50 ms, requests made) from `clients` concurrent clients: wrk (a C client,
    so the load generator takes little of the cores the workers need) when installed, else Python threads."""
    if shutil.which("wrk"):
        return wrk_load(uri, payload, clients, seconds=max(2.0, requests / 200))
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def client() -> None:
        for _ in range(per_client):
            request = urllib.request.Request(uri, data=payload, headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), statistics.median(latencies), len(latencies)


def wrk_load(uri: str, payload: bytes, clients: int, seconds: float) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        body = payload.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        script.write_text(f'wrk.method = "POST"\nwrk.body = "{body}"\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        out = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{seconds:.0f}s",
                              "--latency", "-s", str(script), uri], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise OSError(f"wrk saw failed requests:\n{out}")
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], done


def train(work: Path, rounds: int) -> None:
    data = work / "full.csv"
    subprocess.run([sys.executable, TRAINING / "src" / "generate_data.py", "--out", data], check=True,
                   capture_output=True)
    # in a wrapper process of its own, whose children's peak resident size is train.py's alone
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    peak_kib = int(subprocess.run([sys.executable, "-c", wrapper, sys.executable, "train.py", "--training-data",
                                   str(data), "--model-output", str(work / "full-model")], cwd=TRAINING / "src",
                                  check=True, capture_output=True, text=True).stdout)
    seconds = time.perf_counter() - started
    size = data.stat().st_size
    row("train, 595,212 rows, the component's defaults", f"{seconds:.1f} s", "", "", "< 40 s on 2 cores")
    row("train, peak memory / CSV size", f"{peak_kib / 1024:.0f} MiB", f"CSV {size / 2**20:.0f} MiB",
        f"{peak_kib * 1024 / size:.1f}x", "< 5x")


def growth(work: Path, rounds: int) -> None:
    ws = work / "growth-ws"
    publish(ws)
    before = du(ws)
    for build in range(3):
        subprocess.run(amlops("publish", TRAINING / "pipeline.yml", "--version", f"build-{build}", "--workspace", ws),
                       check=True, capture_output=True)
    per_version = (du(ws) - before) / 3
    before = du(ws)
    for _ in range(rounds):
        subprocess.run(amlops("submit", PIPELINE, "--no-reuse", "--workspace", ws), check=True, capture_output=True)
    per_run = (du(ws) - before) / rounds
    row("workspace growth per published version (same content)", f"{per_version / 1024:.1f} KiB",
        f"sample data {SAMPLE.stat().st_size / 1024:.0f} KiB", f"{per_version / SAMPLE.stat().st_size:.2f}x",
        "unchanged files stored once")
    row("workspace growth per `submit --no-reuse` run", f"{per_run / 1024:.0f} KiB", "", "", "`amlops gc` frees it")


ROWS = {"package": package, "flow": flow, "executor": executor, "reuse": reuse, "serving": serving,
        "train": train, "growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-train", action="store_true", help="also train on full-size data (~1 min)")
    parser.add_argument("--only", nargs="*", choices=sorted(ROWS), help="only these rows")
    options = parser.parse_args()
    chosen = options.only or [name for name in ROWS if name != "train" or options.full_train]
    # A warm machine: an installed wheel has bytecode; an editable install under PYTHONDONTWRITEBYTECODE=1
    # (as on this machine) would compile amlops from source in every command.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "amlops")], capture_output=True)
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| figure | value | baseline (same run) | ratio | goal |\n|---|---|---|---|---|")
    if "train" not in chosen:
        row("train, 595,212 rows", "skipped", "", "", "pass --full-train (about a minute)")
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as folder:
            try:
                ROWS[name](Path(folder), options.rounds)
            except (subprocess.CalledProcessError, OSError) as error:
                row(name, "failed", "", "", f"{type(error).__name__}: {error}")
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
