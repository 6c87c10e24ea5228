"""Where the tests find the reference specs (official schemas, REST specs, recorded Azure traffic), in order:

1. the folder named by AMLOPS_SPECS;
2. ../shared/specs beside the repository (a development checkout);
3. a cache (AMLOPS_SPECS_CACHE, default ~/.cache/amlops-specs) filled on first use by downloading every file that
   tests/specs-manifest.json lists, each pinned by source commit and sha256 (AMLOPS_SPECS_BASE_URL replaces
   https://raw.githubusercontent.com, for a mirror).

When none is available the tests that need them skip with one line saying so, or fail on CI (prerequisites.py).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

from prerequisites import missing

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MANIFEST = TESTS / "specs-manifest.json"
FOLDER_VARIABLE = "AMLOPS_SPECS"
CACHE_VARIABLE = "AMLOPS_SPECS_CACHE"
BASE_URL_VARIABLE = "AMLOPS_SPECS_BASE_URL"
DOWNLOAD_TIMEOUT_S = 30
_COMPLETE = ".complete"  # written last: a cache folder without it is not used


class SpecsUnavailable(Exception):
    """No specs: the message is one line saying why and how to get them."""


def locate(environ: Mapping[str, str] = os.environ, repo: Path = REPO, manifest_path: Path = MANIFEST) -> Path:
    named = environ.get(FOLDER_VARIABLE, "").strip()
    if named:
        if not Path(named).is_dir():
            raise SpecsUnavailable(f"{FOLDER_VARIABLE}={named} is not a folder; point it at a copy of the "
                                   f"reference specs or unset it")
        return Path(named).resolve()
    sibling = repo.parent / "shared" / "specs"
    if sibling.is_dir():
        return sibling
    manifest = json.loads(manifest_path.read_text())
    cache = cached_folder(environ, manifest)
    if not (cache / _COMPLETE).is_file():
        base_url = environ.get(BASE_URL_VARIABLE, "").strip() or manifest["base_url"]
        try:
            download(manifest, base_url, cache, manifest_path.parents[1])
        except (OSError, ValueError) as error:
            raise SpecsUnavailable(f"no reference specs: {FOLDER_VARIABLE} is not set, {sibling} does not exist "
                                   f"and the pinned download from {base_url} failed ({one_line(error)}); set "
                                   f"{FOLDER_VARIABLE}=<folder> or allow the download (README.md, Tests)") from None
    return cache


def cached_folder(environ: Mapping[str, str], manifest: dict) -> Path:
    root = environ.get(CACHE_VARIABLE, "").strip()
    if not root:
        root = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amlops-specs"
    digest = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / digest


def download(manifest: dict, base_url: str, destination: Path, repo: Path = REPO) -> None:
    """Fetch every file of `manifest` into `destination`, all or nothing: a file whose sha256 differs is refused."""
    partial = destination.with_name(f"{destination.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with ThreadPoolExecutor(8) as pool:
            contents = pool.map(lambda item: fetch(item, base_url, repo), manifest["files"])
            for item, data in zip(manifest["files"], contents):
                target = partial / item["path"]
                if not target.resolve().is_relative_to(partial.resolve()):
                    raise ValueError(f"{item['path']}: outside the specs folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        (partial / _COMPLETE).write_text(base_url + "\n")
        if not (destination / _COMPLETE).is_file():  # another session may have finished first
            shutil.rmtree(destination, ignore_errors=True)
            partial.rename(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def fetch(item: dict, base_url: str, repo: Path) -> bytes:
    """One file's bytes, checked against the manifest's size and sha256."""
    if "in_repo" in item:
        data = (repo / item["in_repo"]).read_bytes()
    else:
        url = f"{base_url.rstrip('/')}/{item['repo']}/{item['commit']}/{urllib.parse.quote(item['upstream'])}"
        limit = item["size"] * (2 if item.get("upstream_line_endings") == "CRLF" else 1)
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{item['path']}: {url} sent more than the manifest's {item['size']} bytes; refused")
        if item.get("upstream_line_endings") == "CRLF":
            data = data.replace(b"\r\n", b"\n")
    digest = hashlib.sha256(data).hexdigest()
    if digest != item["sha256"]:
        raise ValueError(f"{item['path']}: sha256 {digest} differs from the manifest's {item['sha256']}; refused")
    return data


def one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


@functools.cache
def _located() -> Path | str:
    try:
        return locate()
    except SpecsUnavailable as error:
        return str(error)


def unavailable_reason() -> str | None:
    """Why the specs were not found, once some test asked for them (None otherwise)."""
    if _located.cache_info().currsize == 0:
        return None
    found = _located()
    return found if isinstance(found, str) else None


def folder() -> Path:
    """The specs folder, or skip the calling test (fail it on CI) with one line saying how to get them."""
    found = _located()
    if isinstance(found, str):
        missing(found, allow_module_level=True)
    return found


def skip_location() -> tuple[str, int]:
    """Where folder() skips: pytest's -ra summary folds every skip reported there into one line."""
    lines, start = inspect.getsourcelines(folder)
    return __file__, start + next(i for i, line in enumerate(lines) if "missing(" in line)


class SpecPath(os.PathLike):
    """A path in the specs folder that locates the folder only when used (read, listed, converted), so module-level
    constants such as `SCHEMA = SPECS / "azure-devops" / "task.schema.json"` cost nothing at import and skip only
    the tests that read them."""

    def __init__(self, *parts: str):
        self._parts = parts

    def __truediv__(self, part: str) -> SpecPath:
        return SpecPath(*self._parts, part)

    def path(self) -> Path:
        return folder().joinpath(*self._parts)

    def __fspath__(self) -> str:
        return str(self.path())

    __str__ = __fspath__

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.path(), name)

    def __repr__(self) -> str:
        return f"<reference specs>/{'/'.join(self._parts)}"


SPECS = SpecPath()
