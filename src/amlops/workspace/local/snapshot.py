"""Immutable snapshots of a pipeline's YAML, components, code and local inputs.

Only regular files and folders are taken: a device (/dev/zero), a fifo or a socket is refused before
anything is read, and so is a symlink loop; a symlink to a file or folder is followed (its content is
copied). The same walk decides what is hashed and what is copied, so the two always agree.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from amlops.errors import AmlopsError

IGNORED = {"__pycache__", ".git", ".pytest_cache", ".ipynb_checkpoints"}


class UnsupportedFile(AmlopsError):
    """Something in a pipeline's files that is not a regular file or folder."""


def snapshot_root(files: tuple[Path, ...]) -> Path:
    """The deepest folder containing every file, so relative paths between them survive the copy."""
    common = Path(os.path.commonpath([str(f) for f in files]))
    return common if common.is_dir() else common.parent


def copy_snapshot(files: tuple[Path, ...], destination: Path, walked: list[tuple[Path, Path]] | None = None,
                  objects: Path | None = None, hashes: dict[Path, str] | None = None) -> None:
    """Copy the files under `destination`, keeping their layout below their common root. With `objects`
    (a content-addressed store), each file is stored once as objects/<sha256> and hard-linked into place,
    so a file unchanged across published versions takes its space once."""
    root = snapshot_root(files)
    for logical, real in walked if walked is not None else walk(files):
        target = destination / logical.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if objects is None or not _link_object(real, target, objects, (hashes or {}).get(real)):
            shutil.copy2(real, target)
    for source in files:  # empty folders too, so the copy has the same shape
        if source.is_dir():
            (destination / source.relative_to(root)).mkdir(parents=True, exist_ok=True)


def _link_object(source: Path, target: Path, objects: Path, digest: str | None) -> bool:
    """Hard-link `target` to the stored object with `source`'s content (storing it first); False where the
    file system has no hard links, and the caller copies instead."""
    stored = objects / (digest or file_hash(source))
    try:
        if not stored.exists():
            objects.mkdir(parents=True, exist_ok=True)
            temporary = objects / f".{stored.name}.{os.getpid()}.tmp"
            shutil.copy2(source, temporary)
            os.chmod(temporary, 0o444)  # shared by every snapshot that holds it: read-only
            os.replace(temporary, stored)
        os.link(stored, target)
        return True
    except OSError as error:
        if error.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise


def content_hash(paths: list[Path] | tuple[Path, ...], relative_to: Path | None = None,
                 walked: list[tuple[Path, Path]] | None = None, hashes: dict[Path, str] | None = None,
                 file_hasher: Callable[[Path], str] | None = None) -> str:
    """SHA-256 over the names and bytes of every file under the given files and folders; `hashes` collects
    each file's own SHA-256; `file_hasher` gives one (default: read the file; the executor's hash cache)."""
    file_hasher = file_hasher or file_hash
    digest = hashlib.sha256()
    hashes = {} if hashes is None else hashes
    for logical, real in sorted(walked if walked is not None else walk(paths)):
        name = logical.relative_to(relative_to) if relative_to else logical
        digest.update(str(name).encode())
        digest.update(b"\0")
        hashes[real] = hashes.get(real) or file_hasher(real)
        digest.update(hashes[real].encode())
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk(paths, within: Path | None = None) -> list[tuple[Path, Path]]:
    """(path as named, real file) for each given file and each file under each given folder; with `within`,
    a file that is really elsewhere (through a symlink) is refused."""
    files: list[tuple[Path, Path]] = []
    for path in paths:
        path = Path(path)
        kind, real = _kind(path)
        if kind == "file":
            files.append((path, real))
        elif kind == "dir":
            _walk_folder(path, real, {real}, files)
    if within is not None:
        for logical, real in files:
            if not real.is_relative_to(within):
                raise UnsupportedFile(f"{logical} is a symlink to {real}, outside the pipeline's repository "
                                      f"{within}; copy the file into the repository instead")
    return files


def copy_files(source: Path, destination: Path) -> None:
    """Copy the file `source` into the new folder `destination`, or the folder `source` as `destination`."""
    destination.mkdir(parents=True)
    base = source if source.is_dir() else source.parent
    for logical, real in walk([source]):
        target = destination / logical.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, target)


def check_regular(path: Path, what: str) -> None:
    """Refuse anything but an existing regular file or folder (or a symlink to one)."""
    _kind(path, what)


def _walk_folder(folder: Path, real_folder: Path, ancestors: set[Path], files: list[tuple[Path, Path]]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise UnsupportedFile(f"{folder}: cannot list the folder ({error.strerror}); fix its permissions") from None
    for entry in entries:
        if entry.name in IGNORED:
            continue
        path = folder / entry.name
        kind, real = _kind(path)
        if kind == "file":
            files.append((path, real))
        elif kind == "dir":
            if real in ancestors:
                raise UnsupportedFile(f"{path}: a symlink loop (it points at {real}, which contains it); remove "
                                      "the symlink or point it elsewhere")
            _walk_folder(path, real, ancestors | {real}, files)


def _kind(path: Path, what: str = "") -> tuple[str, Path]:
    """('file' | 'dir', resolved path); anything else is an UnsupportedFile naming the path."""
    label = f"{what} {path}" if what else str(path)
    try:
        real = path.resolve(strict=True)
        mode = os.stat(real).st_mode
    except RuntimeError:
        raise UnsupportedFile(f"{label}: a symlink loop; remove the symlink or point it at a file") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsupportedFile(f"{label}: a symlink loop; remove the symlink or point it at a file") from None
        raise UnsupportedFile(f"{label}: {error.strerror or error}; give an existing file or folder") from None
    if stat.S_ISREG(mode):
        return "file", real
    if stat.S_ISDIR(mode):
        return "dir", real
    raise UnsupportedFile(f"{label} is a {_describe(mode)}, not a regular file or folder; give a file or a folder")


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "named pipe (fifo)"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"
