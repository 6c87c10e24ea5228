import shutil
from pathlib import Path

import pytest

from hostile_servers import servers  # noqa: F401 - the fixture of misbehaving HTTP servers
import specs
from support import TESTS


# Fixtures that start a real server process: Azurite (Node), and the ACI stand-in with the real Caddy.
SERVER_FIXTURES = {"azurite", "stand_in"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """A test that starts a server process is slow, whichever file it is in (before `-m` selects)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip for missing specs inside a fixture is reported at the test's line; report it where specs.py skips,
    so pytest's summary gives the reason once for all of them."""
    outcome = yield
    report = outcome.get_result()
    reason = specs.unavailable_reason()
    if reason and report.skipped and isinstance(report.longrepr, tuple) and reason in report.longrepr[2]:
        report.longrepr = (*specs.skip_location(), report.longrepr[2])


def pytest_terminal_summary(terminalreporter) -> None:
    """One line for every test that could not run without the reference specs, however many there are."""
    reason = specs.unavailable_reason()
    if reason is None:
        return
    for outcome in ("skipped", "failed", "error"):
        count = sum(reason in str(report.longrepr) for report in terminalreporter.stats.get(outcome, []))
        if count:
            terminalreporter.write_line(f"{count} tests {outcome} without the reference specs: {reason}")


@pytest.fixture
def mini_project(tmp_path: Path) -> Path:
    """A copy of tests/mini_project: a two-step pipeline of pure-Python steps, fast to run."""
    project = tmp_path / "project"
    shutil.copytree(TESTS / "mini_project", project)
    return project


@pytest.fixture
def workspace(tmp_path: Path):
    from amlops.workspace.local.workspace import LocalWorkspace

    return LocalWorkspace(tmp_path / "ws")
