"""The local online endpoint: what the Caddy router and the rollout cost, as ratios measured in the same run.

* a rollout (new deployment, smoke test alone, traffic 10 -> 50 -> 100, each checked) against a plain
  `deploy_local` of the same model (the baseline);
* the p50 latency of a scoring request through the router against the same request sent to the server;
* the requests a client loop sent during the rollouts and how many failed (expected: 0).

Run: python bench/bench_online_endpoint.py (needs caddy).
"""
from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from amlops.deploy.local.target import delete_local, deploy_local
from amlops.deploy.online_endpoint.local import LocalEndpoints
from amlops.deploy.online_endpoint.model import DeploymentSpec
from amlops.deploy.online_endpoint.rollout import RolloutPlan, rollout
from amlops.workspace.local.workspace import LocalWorkspace

SCORE = "def init():\n    pass\n\n\ndef run(raw):\n    return {'predictions': [VALUE]}\n"
BODY = json.dumps({"data": [[1, 2, 3]]}).encode()


def folder(root: Path, name: str, value: float) -> Path:
    path = root / name
    path.mkdir()
    (path / "score.py").write_text(SCORE.replace("VALUE", str(value)))
    (path / "requirements.txt").write_text("")
    return path


def call(uri: str, key: str | None = None) -> float:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(uri, data=BODY, headers=headers), timeout=10) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-online-"))
    ws = LocalWorkspace(root / "ws")
    (root / "model").mkdir()
    (root / "model" / "model.txt").write_text("m\n")
    model = ws.register_model("m", root / "model", {}, {}, None)
    request = root / "request.json"
    request.write_text(json.dumps({"data": [[1, 2, 3]]}))
    endpoints = LocalEndpoints(ws, on_info=lambda line: None)
    plan = RolloutPlan(request, smoke_requests=5, readiness_timeout_s=60)

    started = time.perf_counter()
    baseline = deploy_local(ws, model, "baseline", folder(root, "base", 0.5), on_info=lambda line: None)
    deploy_s = time.perf_counter() - started
    first = rollout(endpoints, "bench-ep", DeploymentSpec("blue", model, folder(root, "blue", 0.1)), plan,
                    on_info=lambda line: None)

    sent, failed, stop = [0], [0], threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                call(first.scoring_uri, first.key)
            except OSError:
                failed[0] += 1
            sent[0] += 1

    client = threading.Thread(target=loop)
    client.start()
    started = time.perf_counter()
    rollout(endpoints, "bench-ep", DeploymentSpec("green", model, folder(root, "green", 0.2)),
            RolloutPlan(request, (10, 50, 100), smoke_requests=5, readiness_timeout_s=60), on_info=lambda line: None)
    rollout_s = time.perf_counter() - started
    stop.set()
    client.join()

    direct = statistics.median(call(baseline.scoring_uri) for _ in range(200))
    routed = statistics.median(call(first.scoring_uri, first.key) for _ in range(200))
    print(f"deploy_local (baseline)          {deploy_s:6.2f} s")
    print(f"rollout 10/50/100 with checks    {rollout_s:6.2f} s   ratio {rollout_s / deploy_s:.2f}x")
    print(f"p50 direct to the server         {direct:6.2f} ms")
    print(f"p50 through the Caddy router     {routed:6.2f} ms   ratio {routed / direct:.2f}x")
    print(f"client loop during the rollout   {sent[0]} requests, {failed[0]} failed")
    endpoints.delete("bench-ep")
    delete_local(ws, "baseline")


if __name__ == "__main__":
    main()
