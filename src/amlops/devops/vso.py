"""The one place that speaks the agent's logging-command protocol (`##vso[area.event k=v;...]data`).

Escaping mirrors what the agent undoes (Agent.Sdk CommandStringConvertor.Unescape, percent decoding on):
it replaces `%3B` -> `;`, `%0D` -> CR, `%0A` -> LF and `%5D` -> `]` in properties and data alike, then
`%AZP25` -> `%`. So `%` is escaped first (as `%AZP25`), then CR and LF everywhere, and `;` and `]` in
property values. Every line written here is masked with the secrets registered so far, and text that
did not come from us is neutralized so it cannot smuggle a command into the agent.
"""
from __future__ import annotations

import io
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from amlops.secret_masking import MASK, Masker, secret_forms

COMMAND_PREFIX = "##vso["
RESULTS = ("Succeeded", "SucceededWithIssues", "Failed", "Cancelled", "Skipped")
__all__ = ["MASK", "secret_forms", "escape_data", "escape_property", "format_command", "neutralize", "Log",
           "LogStream"]


def escape_data(value: str) -> str:
    """Escape the data part (after `]`) of a command."""
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a property value: data escaping plus the `;` and `]` separators."""
    return escape_data(value).replace(";", "%3B").replace("]", "%5D")


def format_command(name: str, properties: Mapping[str, object] | None = None, data: str = "") -> str:
    """`##vso[name k=v;k=v]data` with every part escaped; properties whose value is None are left out."""
    if name.count(".") != 1 or any(c in name for c in " ;]"):
        raise ValueError(f"not a command name: {name!r}")
    pairs = []
    for key, value in (properties or {}).items():
        if not key.isalnum():
            raise ValueError(f"not a property name: {key!r}")
        if value is not None:
            pairs.append(f"{key}={escape_property(_text(value))}")
    head = f"{name} {';'.join(pairs)}" if pairs else name
    return f"{COMMAND_PREFIX}{head}]{escape_data(data)}"


def neutralize(text: str) -> str:
    """Break `##vso[` and `##[` in text we did not write, so the agent logs it instead of obeying it."""
    return text.replace("##vso[", "##_vso[").replace("##[", "##_[")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Log:
    """Writes log lines and commands to the agent (stdout), masking every registered secret."""

    def __init__(self, stream: TextIO | None = None, debug: bool = False):
        self._stream = stream if stream is not None else sys.stdout
        self._masker = Masker()
        self._lock = threading.Lock()
        self.debug_enabled = debug

    # -- masking ---------------------------------------------------------------------------------
    def setsecret(self, value: str | None) -> None:
        """Register a secret with the agent (`task.setsecret`) and mask it in everything written after."""
        for form in self._masker.add(value):
            self._write(format_command("task.setsecret", None, form))

    def mask(self, text: str) -> str:
        return self._masker.mask(text)

    # -- plain log ---------------------------------------------------------------------------------
    def info(self, text: str) -> None:
        """Log text (possibly several lines) that may contain anything: masked and neutralized."""
        for line in (text.splitlines() or [""]):
            self._write(neutralize(self.mask(line)))

    def debug(self, text: str) -> None:
        if self.debug_enabled:
            for line in text.splitlines():
                self._write("##[debug]" + neutralize(self.mask(line)))

    def section(self, text: str) -> None:
        self._write("##[section]" + neutralize(self.mask(text)))

    def group(self, title: str) -> None:
        self._write("##[group]" + neutralize(self.mask(title)))

    def endgroup(self) -> None:
        self._write("##[endgroup]")

    # -- commands ----------------------------------------------------------------------------------
    def command(self, name: str, properties: Mapping[str, object] | None = None, data: str = "") -> None:
        """Any command; property values and data are masked (never use this for a secret's own value)."""
        masked = {key: None if value is None else self.mask(_text(value))
                  for key, value in (properties or {}).items()}
        self._write(format_command(name, masked, self.mask(data)))

    def setvariable(self, name: str, value: str, is_output: bool = True, is_secret: bool = False) -> None:
        """Set a (by default output) variable; a secret one is registered first and sent unmasked."""
        props = {"variable": name, "isOutput": is_output, "issecret": is_secret}
        if is_secret:
            self.setsecret(value)
            self._write(format_command("task.setvariable", props, value))
        else:
            self.command("task.setvariable", props, value)

    def setprogress(self, percent: int, text: str = "") -> None:
        self.command("task.setprogress", {"value": max(0, min(100, int(percent)))}, text)

    def uploadsummary(self, path: str) -> None:
        self.command("task.uploadsummary", None, path)

    def logissue(self, kind: str, message: str, source_path: str | None = None,
                 line: int | None = None) -> None:
        if kind not in ("error", "warning"):
            raise ValueError(f"issue type must be error or warning: {kind!r}")
        self.command("task.logissue", {"type": kind, "sourcepath": source_path, "linenumber": line}, message)

    def error(self, message: str) -> None:
        self.logissue("error", message)

    def warning(self, message: str) -> None:
        self.logissue("warning", message)

    def complete(self, result: str, message: str = "") -> None:
        if result not in RESULTS:
            raise ValueError(f"unknown task result: {result!r}")
        self.command("task.complete", {"result": result}, message)

    def _write(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class LogStream(io.TextIOBase):
    """A file-like stand-in for sys.stdout/sys.stderr: whole lines go through `Log.info` (masked and
    neutralized), so what the API or a library prints cannot leak a secret or forge a command."""

    def __init__(self, log: Log):
        super().__init__()
        self._log = log
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._log.info(line.rstrip("\r"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._log.info(self._pending)
            self._pending = ""
