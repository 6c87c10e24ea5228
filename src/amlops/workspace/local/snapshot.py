"""Immutable snapshots of a pipeline's YAML, components, code and local inputs."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

IGNORED = {"__pycache__", ".git", ".pytest_cache", ".ipynb_checkpoints"}


def snapshot_root(files: tuple[Path, ...]) -> Path:
    """The deepest folder containing every file, so relative paths between them survive the copy."""
    common = Path(os.path.commonpath([str(f) for f in files]))
    return common if common.is_dir() else common.parent


def copy_snapshot(files: tuple[Path, ...], destination: Path) -> None:
    root = snapshot_root(files)
    for source in files:
        target = destination / source.relative_to(root)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*IGNORED))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def content_hash(paths: list[Path] | tuple[Path, ...], relative_to: Path | None = None) -> str:
    """SHA-256 over the names and bytes of every file under the given files and folders."""
    digest = hashlib.sha256()
    for file in sorted(_walk(paths)):
        name = file.relative_to(relative_to) if relative_to else file
        digest.update(str(name).encode())
        digest.update(b"\0")
        digest.update(file_hash(file).encode())
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(paths) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file() and not IGNORED & set(p.parts))
    return files
