"""Showing a run as it happens: colored status lines on a terminal, plain lines in a pipeline log."""
from __future__ import annotations

import sys
import time

import click

from amlops.cli.echo import untrusted

STATUS_COLORS = {"Running": "cyan", "Completed": "green", "Failed": "red", "Canceled": "yellow"}


class ProgressPrinter:
    def __init__(self, quiet_logs: bool = False, stream=None):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.quiet_logs = quiet_logs
        self.started: dict[str, float] = {}

    def on_event(self, kind: str, step: str, text: str) -> None:
        if kind == "status":
            self._status(step, text)
        elif kind == "log" and not self.quiet_logs:
            self._echo(f"  [{step}] {text}", dim=True)
        elif kind == "warning":
            self._echo(f"  [{step}] warning: {text}" if step else f"  warning: {text}", color="yellow")
        elif kind == "info" and not self.quiet_logs:
            self._echo(f"  [{step}] {text}" if step else f"  {text}", dim=True)

    def _status(self, step: str, status: str) -> None:
        label = f"step {step}" if step else "run"
        if status == "Running":
            self.started[label] = time.monotonic()
        elapsed = ""
        if status != "Running" and label in self.started:
            elapsed = f" ({time.monotonic() - self.started[label]:.1f} s)"
        self._echo(f"{label}: {status}{elapsed}", color=STATUS_COLORS.get(status), bold=True)

    def _echo(self, text: str, color: str | None = None, dim: bool = False, bold: bool = False) -> None:
        text = untrusted(text)
        if self.interactive:
            text = click.style(text, fg=color, dim=dim, bold=bold)
        click.echo(text, file=self.stream)

    def close(self) -> None:
        self.stream.flush()
