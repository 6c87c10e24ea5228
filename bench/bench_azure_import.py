"""What `import azure.ai.ml` costs, next to what the local flow imports (`amlops.cli`), measured in fresh
processes in the same run: wall time and peak memory. Prints ratios, asserts nothing.

    python bench/bench_azure_import.py [repeats]
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

PROBE = """
import json, resource, sys, time
start = time.perf_counter()
{imports}
elapsed = time.perf_counter() - start
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": elapsed, "rss_mb": rss_mb}}))
"""
CASES = {
    "python alone": "pass",
    "amlops.cli (the local flow)": "import amlops.cli",
    "azure.ai.ml": "import azure.ai.ml",
    "amlops azure backend (azure.ai.ml, quiet)": "from amlops.workspace.azure.client import import_azure_ai_ml\n"
                                                 "import_azure_ai_ml()",
}


def measure(imports: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(repeats: int) -> None:
    rows = {}
    for name, imports in CASES.items():
        samples = [measure(imports) for _ in range(repeats)]
        rows[name] = (statistics.median(s["seconds"] for s in samples), statistics.median(s["rss_mb"] for s in samples))
    local_seconds, local_rss = rows["amlops.cli (the local flow)"]
    print(f"{'import':<44} {'seconds':>8} {'peak MB':>8} {'x local time':>13}")
    for name, (seconds, rss) in rows.items():
        print(f"{name:<44} {seconds:8.3f} {rss:8.1f} {seconds / local_seconds:13.1f}")
    azure_seconds, azure_rss = rows["azure.ai.ml"]
    print(f"\nazure.ai.ml costs {azure_seconds / local_seconds:.0f}x the local flow's import time and "
          f"{azure_rss - local_rss:.0f} MB more memory ({repeats} runs each, medians)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
