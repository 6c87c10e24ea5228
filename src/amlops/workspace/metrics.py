"""metrics.json, what an evaluate step writes into a pipeline output and the gate reads: a JSON object of
metric name to number, the same on both workspaces."""
from __future__ import annotations

import json

from amlops.errors import AmlopsError

METRICS_FILE = "metrics.json"


def missing(where: str, output: str) -> str:
    return (f"{where} holds no {METRICS_FILE}; the evaluate step must write {METRICS_FILE} into "
            f"${{{{outputs.{output}}}}}")


def parse_metrics(text: str, where: str) -> dict:
    """The metrics in text, or AmlopsError naming `where` and how to fix it."""
    try:
        metrics = json.loads(text)
    except ValueError as error:
        raise AmlopsError(f"{where} is not valid JSON ({error}); write a JSON object of metric name to "
                          "number") from None
    if not isinstance(metrics, dict):
        raise AmlopsError(f"{where} is not a JSON object; write {{\"auc\": 0.8, ...}}")
    return metrics
