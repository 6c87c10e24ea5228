"""Errors of an Azure data-plane service (storage, key vault) as one actionable line, without URLs or values."""
from __future__ import annotations

from typing import Any

from amlops.errors import AmlopsError


class ServiceErrors:
    """Context manager: `service` ("storage account x") refused or failed `action`; `role` is the data role the
    pipeline's identity needs on it. Not-found errors pass through (callers decide what absence means)."""

    def __init__(self, action: str, service: str, role: str):
        self.action, self.service, self.role = action, service, role

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

        if error is None or isinstance(error, ResourceNotFoundError):
            return False
        if isinstance(error, ClientAuthenticationError) and getattr(error, "status_code", None) is None:
            raise AmlopsError(f"could not sign in to {self.service} to {self.action}: {_first_line(error)}; check "
                              "the service connection's credentials") from None
        if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
            raise AmlopsError(f"{self.service} refused to {self.action} (HTTP {error.status_code}); give the "
                              f"pipeline's identity the '{self.role}' role on it") from None
        if isinstance(error, HttpResponseError):
            code = getattr(error, "error_code", None) or getattr(getattr(error, "error", None), "code", None) or ""
            raise AmlopsError(f"{self.service} failed to {self.action}: HTTP {error.status_code} {code}".rstrip()
                              + "; retry, or check it") from None
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
