"""Masking secrets in every encoding a server may echo them: raw, trimmed, JSON-escaped, URL and form
encoded (`%XX`, `+` for space), and base64 (standard and URL-safe, at any alignment, which covers the
`Basic base64(user:secret)` form). The tasks (amlops.devops.vso) and the CLI mask with this one module."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_FORM = 6  # shorter fragments (a base64 window of a tiny secret) would mask ordinary words
_MIN_SECRET_LINE = 8


def secret_forms(value: str) -> list[str]:
    """The strings to mask for one secret, the secret itself first."""
    if not value or not value.strip():
        return []
    forms = []
    for text in dict.fromkeys([value, value.strip()]):
        forms += [text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
                  json.dumps(text)[1:-1].replace("/", "\\/"), quote(text, safe=""), quote_plus(text),
                  quote(text, safe="/:@")]
        forms += [form for form in _base64_windows(text.encode("utf-8")) if len(form) >= MIN_FORM]
    if "\n" in value or "\r" in value:
        forms += [line.strip() for line in value.splitlines()
                  if len(line.strip()) >= _MIN_SECRET_LINE and not line.startswith("-----")]
    return list(dict.fromkeys(form for form in forms if form))


def _base64_windows(data: bytes) -> list[str]:
    """For each of the 3 alignments the secret can have inside a longer encoded text, the base64 characters
    that depend only on the secret's bytes; one of them appears in any base64 text that encodes it."""
    windows = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        first_group = 0 if offset == 0 else 1
        last_group = (offset + len(data)) // 3
        window = encoded[4 * first_group:4 * last_group]
        whole = encoded if offset == 0 else ""  # padding included, when the secret is encoded alone
        windows += [text.replace("+", "-").replace("/", "_") for text in (window, whole)] + [window, whole]
    return windows


class Masker:
    """The registered secrets' forms, replaced by *** in any text."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._forms: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> list[str]:
        """Register a secret; returns the forms that were new."""
        new = [form for form in secret_forms(secret or "") if form not in self._forms]
        self._forms = sorted([*self._forms, *new], key=len, reverse=True)
        return new

    def mask(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


# The secrets the running command handles (a scoring key, a PAT): whatever the CLI prints goes through it.
PROCESS_MASKER = Masker()


def register(secret: str | None) -> None:
    PROCESS_MASKER.add(secret)


def mask(text: str) -> str:
    return PROCESS_MASKER.mask(text)
