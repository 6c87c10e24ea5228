"""Printing text that did not come from us (step output, server answers and logs, errors quoting them)."""
from __future__ import annotations

import os

from amlops.devops.vso import neutralize
from amlops.secret_masking import mask


def untrusted(text: str) -> str:
    """Secrets masked in every encoding; inside a pipeline script (TF_BUILD set) `##vso[` and `##[` are
    neutralized as the tasks do, so the agent logs such a line instead of obeying it."""
    text = mask(text)
    return neutralize(text) if os.environ.get("TF_BUILD") else text
