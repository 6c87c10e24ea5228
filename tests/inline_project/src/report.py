"""Scale the total and log it with MLflow, as an Azure ML job logs (MLFLOW_TRACKING_URI is set for it)."""
import argparse
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--prepared", type=Path, required=True)
parser.add_argument("--scale", type=int, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()
scaled = float((args.prepared / "total.txt").read_text()) * args.scale
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "summary.txt").write_text(str(scaled))
if os.environ.get("MLFLOW_TRACKING_URI"):
    import mlflow

    with mlflow.start_run():
        mlflow.log_param("scale", args.scale)
        mlflow.log_metric("scaled_total", scaled)
        mlflow.log_text(f"scaled total {scaled}\n", "report.txt")
print(f"scaled total {scaled}")
