"""Paths and helpers shared by the tests (conftest.py holds the fixtures)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SPECS = REPO.parent / "shared" / "specs"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
