"""Building azure-ai-ml's MLClient for a workspace, quietly.

azure-ai-ml writes to stderr: "This is an experimental class" warnings (at import and when some entities
are built), msrest deserialization notes, INFO lines through its own stderr handler ("Downloading
artifact ..."), and a bare color-reset line after every upload. An Azure Pipelines step configured to fail
on stderr would fail on them. So the noisy loggers are set to ERROR before azure.ai.ml is imported, its
console handler is moved to stdout at WARNING, and `stderr_to_stdout()` wraps the calls that print.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from amlops.workspace.azure.workspace import AzureWorkspace

QUIET_LOGGERS = (
    "azure.ai.ml._utils._experimental",  # "Class X: This is an experimental class..."
    "azure.ai.ml._restclient",  # msrest "... is not a known attribute of class ..." notes
    "azure.ai.ml._utils._asset_utils",  # upload progress notes
    "azure.ai.ml.operations._operation_orchestrator",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",  # DefaultAzureCredential's 14-line list of what it tried, before our one line says so
    "msrest.serialization",
)


def quiet_azure_logging() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _console_handler_to_stdout() -> None:
    logger = logging.getLogger("azure.ai.ml")
    logger.setLevel(logging.WARNING)
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _CurrentStdout):
            handler.setStream(_CurrentStdout())


class _CurrentStdout(io.TextIOBase):
    """Whatever sys.stdout is when a line is written (it may be replaced after the handler is set up)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class _ToStdout(io.TextIOBase):
    """A stderr stand-in: what has visible text goes to stdout, ANSI color codes and blank lines are dropped."""

    def write(self, text: str) -> int:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        if plain.strip():
            sys.stdout.write(plain if plain.endswith("\n") else plain + "\n")
        return len(text)


@contextlib.contextmanager
def stderr_to_stdout() -> Iterator[None]:
    with contextlib.redirect_stderr(_ToStdout()):
        yield


def import_azure_ai_ml() -> Any:
    """`azure.ai.ml`, imported with its warnings silenced; AmlopsError when it is not installed."""
    from amlops.errors import AmlopsError

    quiet_azure_logging()
    try:
        import azure.ai.ml as azure_ai_ml
    except ImportError:
        raise AmlopsError("the azure backend needs azure-ai-ml; install it with pip install 'amlops[azure]'") from None
    _console_handler_to_stdout()
    return azure_ai_ml


def build_ml_client(ws: "AzureWorkspace") -> Any:
    azure_ai_ml = import_azure_ai_ml()
    return azure_ai_ml.MLClient(ws.credential, ws.subscription_id, ws.resource_group, ws.workspace_name,
                                show_progress=False, enable_telemetry=False, **ws.cloud.ml_client_kwargs(),
                                **ws.client_kwargs)
