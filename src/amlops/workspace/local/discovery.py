"""Finding the local workspace the way git finds its repository: walk up from the current folder.

`--workspace` and `AMLOPS_WORKSPACE` always win. Otherwise the first `.amlops` folder found in the
current folder or a parent, stopping at the repository root (the first folder holding `.git`), is the
workspace; with none, a new one goes to the repository root (or the current folder outside a
repository), so `cd training && amlops runs list` sees the runs made from the root.
"""
from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_FOLDER = ".amlops"
REPOSITORY_MARKERS = (".git", ".hg")


def find_workspace(start: Path | None = None) -> Path:
    """The local workspace folder for `start` (default the current folder); it may not exist yet."""
    explicit = os.environ.get("AMLOPS_WORKSPACE")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / WORKSPACE_FOLDER).is_dir():
            return folder / WORKSPACE_FOLDER
        if _is_repository_root(folder):
            return folder / WORKSPACE_FOLDER
    return here / WORKSPACE_FOLDER


def _is_repository_root(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in REPOSITORY_MARKERS)
