"""Every path the local workspace writes, reads or deletes is checked to stay inside its root.

This holds whatever the names are (defence in depth behind `amlops.names`): a path is resolved, symlinks
included, before it is used, and refused when it leaves the workspace.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from amlops.errors import AmlopsError


SEPARATORS = {"/", "\\", "\0", os.sep} | ({os.altsep} if os.altsep else set())


class OutsideWorkspace(AmlopsError):
    """A path that would leave the workspace folder."""


def inside(root: Path, *parts: str) -> Path:
    """root/part/part..., refused unless each part is one plain path segment (not '', '.', '..', nothing with a
    separator) and the whole resolves, symlinks included, strictly inside `root`."""
    for part in parts:
        if not isinstance(part, str) or part in ("", ".", "..") or any(c in part for c in SEPARATORS):
            raise OutsideWorkspace(f"refusing the path segment {part!r} in the workspace {root}: each name must be "
                                   "one plain folder or file name")
    return contained(root, root.joinpath(*parts))


def contained(root: Path, path: Path) -> Path:
    """`path`, refused unless it resolves (symlinks included) strictly inside `root`."""
    try:
        base, resolved = root.resolve(), path.resolve()
    except (OSError, RuntimeError) as error:
        raise OutsideWorkspace(f"refusing {path}: it cannot be resolved ({error})") from None
    if resolved == base or not resolved.is_relative_to(base):
        raise OutsideWorkspace(f"refusing {path}: it resolves to {resolved}, outside the workspace {root}")
    return path


def relative(root: Path, path: Path | str) -> str:
    """How the database stores a path under the workspace: relative to the root, so a copied or moved
    workspace keeps working. A path elsewhere (a user's file) stays absolute."""
    path = Path(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def absolute(root: Path, stored: str) -> Path:
    """The path a stored value names: relative ones under the (current) root, absolute ones as they are."""
    path = Path(stored)
    return path if path.is_absolute() else root / path


def remove_tree(root: Path, path: Path) -> None:
    """Delete a folder (or file) inside the workspace, then its parents that became empty (not the root's
    own top-level folders)."""
    target = contained(root, path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
    remove_empty_parents(root, target)


def remove_empty_parents(root: Path, path: Path) -> None:
    """Remove the empty folders between `path` and the root's top-level folders (`models/`, `snapshots/`...)."""
    top = root.resolve()
    parent = path.resolve().parent
    while parent.parent != top and parent != top and parent.is_relative_to(top):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent
