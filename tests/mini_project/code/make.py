"""Test step: 'trains' by summing the numbers in a CSV and scaling the sum."""
import argparse
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--scale", type=int)
parser.add_argument("--out")
parser.add_argument("--label", default="none")
args = parser.parse_args()
if os.environ.get("MINI_FAIL") == "make":
    raise SystemExit("make: failing on purpose")
time.sleep(float(os.environ.get("MINI_SLEEP", "0")))
total = sum(float(v) for v in Path(args.data).read_text().split())
print(f"training on {args.data} with scale {args.scale} label {args.label}")
Path(args.out, "model.txt").write_text(str(total * args.scale))
