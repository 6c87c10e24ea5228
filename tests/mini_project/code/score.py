"""Test step: writes the 'model' value as a metric."""
import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--metrics")
args = parser.parse_args()
value = float(Path(args.model, "model.txt").read_text())
Path(args.metrics, "metrics.json").write_text(json.dumps({"auc": value / 100}))
print("scored", value)
