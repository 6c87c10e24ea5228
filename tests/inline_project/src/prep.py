"""Sum the numbers of a CSV file (one header line) into <out>/total.txt."""
import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--numbers", type=Path, required=True)
parser.add_argument("--greeting", required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()
total = sum(float(line) for line in args.numbers.read_text().splitlines()[1:] if line.strip())
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "total.txt").write_text(str(total))
print(f"{args.greeting}: total {total}")
