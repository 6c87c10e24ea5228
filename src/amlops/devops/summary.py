"""The Markdown summary a task uploads (`task.uploadsummary`): shown as a tab on the pipeline run."""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        value = f"{value:.6g}"
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    headers = list(headers)
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def properties(pairs: Mapping[str, Any]) -> str:
    return table(("", ""), pairs.items())


class Summary:
    """Sections of Markdown collected while a task runs, written to one file at the end."""

    def __init__(self, title: str):
        self.parts: list[str] = [f"### {title}"]

    def add(self, heading: str | None, body: str) -> None:
        self.parts.append(f"#### {heading}\n\n{body}" if heading else body)

    def text(self) -> str:
        return "\n\n".join(self.parts) + "\n"

    def write(self, directory: Path, task_name: str) -> Path:
        """`<directory>/amlops-<random>/<task_name>.md`: the agent titles the summary tab with the file's name,
        and a folder of its own keeps two steps of one task from overwriting each other."""
        folder = directory / f"amlops-summary-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{task_name}.md"
        path.write_text(self.text(), encoding="utf-8")
        return path


def metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = sorted((name, value) for name, value in metrics.items() if not isinstance(value, (dict, list)))
    return table(("metric", "value"), rows) if rows else "_no metrics reported_"


def latency_table(latency_ms: Mapping[str, float], budget_ms: float | None) -> str:
    rows = [(name, latency_ms.get(name)) for name in ("p50", "p95", "p99")]
    text = table(("percentile", "latency (ms)"), rows)
    return text + (f"\n\np95 budget: {budget_ms:g} ms" if budget_ms else "")
