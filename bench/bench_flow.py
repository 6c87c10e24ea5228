"""The whole flow's time split by stage on a fresh workspace, and the scoring latency the smoke test
measures through the inference server next to a direct in-process call of score.run()."""
from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from amlops.deploy.local.target import delete_local
from amlops.flow import Flow, FlowOptions
from amlops.workspace.local.workspace import LocalWorkspace

REPO = Path(__file__).resolve().parents[1]
SCORING = REPO / "training" / "scoring"
REQUESTS = 200


def direct_run_ms(model_dir: Path) -> float:
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    spec = importlib.util.spec_from_file_location("score_bench", SCORING / "score.py")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    score.init()
    payload = (SCORING / "sample-request.json").read_text()
    timings = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        score.run(payload)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        ws = LocalWorkspace(Path(folder) / "ws")
        options = FlowOptions(pipeline_file=REPO / "training" / "pipeline.yml", smoke_requests=REQUESTS,
                              deployment_name="bench")
        result = Flow(ws, options, on_stage=lambda stage, ended: None).run()
        try:
            if not result.passed:
                sys.exit("the flow failed: " + "; ".join(s.detail for s in result.stages if not s.ok))
            for stage in result.stages:
                print(f"{stage.name:<11} {stage.seconds:6.2f} s")
            print(f"{'total':<11} {sum(s.seconds for s in result.stages):6.2f} s")
            served = result.smoke.latency_ms["p50"]
            direct = direct_run_ms(result.decision.model.path)
            print(f"scoring p50 through the inference server: {served:.2f} ms over {REQUESTS} requests "
                  f"(p95 {result.smoke.latency_ms['p95']:.2f} ms)")
            print(f"score.run() called directly in-process:   {direct:.2f} ms")
            print(f"server overhead ratio:                    {served / direct:.1f}x")
            print(json.dumps({"stages": {s.name: round(s.seconds, 2) for s in result.stages},
                              "served_p50_ms": round(served, 2), "direct_ms": round(direct, 2)}))
        finally:
            delete_local(ws, "bench")


if __name__ == "__main__":
    main()
