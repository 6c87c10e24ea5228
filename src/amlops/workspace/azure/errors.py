"""Azure SDK exceptions -> one-line AmlopsErrors that name the resource and what to do.

Transient faults (429 with Retry-After, 5xx, connection resets) never get here for idempotent calls: the
azure-core retry policy in every client's pipeline retries them with backoff first. What arrives is
permanent (or retried out) and is said once, without a traceback and without secrets (SAS signatures
are scrubbed).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from amlops.errors import AmlopsError, NotFoundError


class TransientAzureError(AmlopsError):
    """Azure or the way to it failed after the client's own retries (429, 5xx, no connection, a sign-in that
    failed without an answer): the same call may succeed later."""


ROLE_HINTS = (
    ("Microsoft.Storage", "Storage Blob Data Contributor on the storage account"),
    ("Microsoft.MachineLearningServices/workspaces/jobs", "AzureML Data Scientist on the workspace"),
    ("Microsoft.MachineLearningServices/workspaces/batchEndpoints", "AzureML Data Scientist on the workspace"),
    ("Microsoft.MachineLearningServices/workspaces/datastores", "AzureML Data Scientist on the workspace"),
    ("Microsoft.MachineLearningServices", "AzureML Data Scientist (or Contributor) on the workspace"),
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn Azure SDK errors raised inside into AmlopsError naming `what` (e.g. "component train:1"); what
    the SDK prints on stderr meanwhile goes to stdout (see azure_client)."""
    from amlops.workspace.azure.client import stderr_to_stdout

    try:
        with stderr_to_stdout():
            yield
    except AmlopsError:
        raise
    except Exception as error:  # noqa: BLE001 - every SDK error becomes one clear line
        translated_error = translate(error, what)
        if translated_error is None:
            raise
        raise translated_error from None


def translate(error: BaseException, what: str) -> AmlopsError | None:
    from azure.core.exceptions import (
        ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError,
    )

    if isinstance(error, ClientAuthenticationError) and _status(error) in (None, 401):
        kind = TransientAzureError if _status(error) is None else AmlopsError
        return kind(f"cannot sign in to Azure for {what}: {_first_line(error)}; check the service connection, "
                    "`az login`, or AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET")
    if isinstance(error, HttpResponseError) and _status(error) is not None:
        return _from_status(error, what)
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return TransientAzureError(f"cannot reach Azure for {what} (retried): {_first_line(error)}; check the "
                                   "network, proxy (HTTPS_PROXY) and firewall rules")
    if type(error).__module__.startswith("azure.ai.ml"):
        if _is_not_found(error):
            return NotFoundError(f"{what} not found: {_first_line(error)}")
        return AmlopsError(f"{what}: {_first_line(error)}")
    return None


def _from_status(error, what: str) -> AmlopsError:
    status, code, message = _status(error), _code(error), _message(error)
    if status == 403 or code in ("AuthorizationFailed", "AuthorizationPermissionMismatch"):
        return AmlopsError(f"permission denied for {what}: {_missing_permission(message, code)}")
    if "quota" in f"{code} {message}".lower():
        return AmlopsError(f"quota exceeded for {what}: {message}; request a quota increase for the region or "
                           "use a smaller VM size / fewer nodes")
    if status == 404:
        return NotFoundError(f"{what} not found ({code or 'NotFound'}): {message}")
    if status == 409:
        return AmlopsError(f"{what} conflicts with what exists ({code or 'Conflict'}): {message}")
    if status == 429 or status >= 500:
        return TransientAzureError(f"Azure kept failing for {what} after retries ({status} {code}): {message}; "
                                   "try again later")
    return AmlopsError(f"Azure refused {what} ({status} {code}): {message}")


def _is_not_found(error: BaseException) -> bool:
    """azure-ai-ml wraps some 404s in its own exceptions (ValidationException RESOURCE_NOT_FOUND)."""
    from azure.core.exceptions import ResourceNotFoundError

    kind = getattr(error, "error_type", None)
    return "NOT_FOUND" in str(getattr(kind, "name", kind) or "").upper() or \
        isinstance(error.__cause__, ResourceNotFoundError)


STORAGE_CODES = ("AuthorizationPermissionMismatch", "AuthorizationFailure", "AuthenticationFailed")


def _missing_permission(message: str, code: str) -> str:
    action = re.search(r"perform action '([^']+)'", message)
    if action:
        needed = action.group(1)
        role = next((hint for prefix, hint in ROLE_HINTS if needed.startswith(prefix)), "a role that allows it")
        return f"the identity may not {needed}; assign it {role} (or use a connection that has it)"
    if code in STORAGE_CODES:
        return (f"the storage account refused the identity ({code}: {message}); assign it Storage Blob Data "
                "Contributor on the storage account or container")
    return f"{message} ({code or 'Forbidden'}); check the identity's role assignments"


def _status(error) -> int | None:
    return getattr(error, "status_code", None) or getattr(getattr(error, "response", None), "status_code", None)


def _code(error) -> str:
    code = getattr(error, "error_code", None) or getattr(getattr(error, "error", None), "code", None)
    return str(code or "")


def _message(error) -> str:
    inner = getattr(getattr(error, "error", None), "message", None)
    return _first_line(inner or getattr(error, "message", None) or error)


def _first_line(error) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Message:"):
            return scrub(line.removeprefix("Message:").strip())
    return scrub(lines[0]) if lines else type(error).__name__


def scrub(text: str) -> str:
    """Remove secrets an error message could carry (SAS signatures, account keys in connection strings)."""
    text = re.sub(r"(sig|se|skoid|sktid|AccountKey|SharedAccessSignature)=[^&\s;'\"]+", r"\1=***", text)
    return text
