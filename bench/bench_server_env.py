"""What the inference server's OpenTelemetry pin costs under each way of resolving it.

1. a separate environment for the server (what amlops does), created with uv and with pip;
2. one environment resolved together with azure-ai-ml (what the alternative would cost), timed as
   a dry-run resolve, and which azure-monitor-opentelemetry it has to fall back to.
Prints seconds and ratios against creating a bare virtual environment in the same run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amlops.deploy.local import server_env

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "training" / "scoring" / "requirements.txt"


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def create(cache: Path, use_uv: bool) -> None:
    os.environ["AMLOPS_CACHE_DIR"] = str(cache)
    if not use_uv:
        server_env._uv = lambda: None
    server_env.server_python(REQUIREMENTS, on_info=lambda text: None)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bare = timed(lambda: subprocess.run([sys.executable, "-m", "venv", str(root / "bare")], check=True))
        with_uv = timed(lambda: create(root / "uv", True))
        with_pip = timed(lambda: create(root / "pip", False))
        resolve = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
                                  "azure-ai-ml", server_env.SERVER_REQUIREMENT], capture_output=True, text=True)
    print(f"bare venv:                              {bare:6.1f} s")
    print(f"server environment with uv (chosen):    {with_uv:6.1f} s  ({with_uv / bare:.1f}x a bare venv), "
          "once per machine")
    print(f"server environment with pip:            {with_pip:6.1f} s  ({with_pip / bare:.1f}x a bare venv)")
    monitor = [line for line in resolve.stdout.split('"name": ') if line.startswith('"azure-monitor-opentelemetry"')]
    print("one environment with azure-ai-ml:       resolves "
          + ("by downgrading azure-monitor-opentelemetry" if monitor else "(see pip's report)")
          + f"; exit {resolve.returncode}; no extra deploy cost")


if __name__ == "__main__":
    main()
