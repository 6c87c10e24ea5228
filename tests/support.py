"""Paths and helpers shared by the tests (conftest.py holds the fixtures)."""
from pathlib import Path

from specs import REPO, SPECS, TESTS  # noqa: F401 (SPECS: the reference specs, located on first use)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
