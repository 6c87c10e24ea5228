"""What the tests do when something they need beyond Python is missing (a tool, the reference specs): skip on a
developer's machine, fail on a CI machine, where a skip would hide that the contract was never checked."""
from __future__ import annotations

import os

import pytest

# Azure Pipelines sets TF_BUILD=True on every agent; GitHub Actions, GitLab and most others set CI=true.
CI_VARIABLES = ("CI", "TF_BUILD")


def on_ci() -> bool:
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in CI_VARIABLES)


def missing(reason: str, *, allow_module_level: bool = False):
    """Skip the current test with `reason`, or fail it on CI."""
    __tracebackhide__ = True
    if on_ci():
        pytest.fail(f"{reason} (a CI run, {' or '.join(CI_VARIABLES)} set, fails instead of skipping)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)
