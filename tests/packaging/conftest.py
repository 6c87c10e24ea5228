"""Fixtures for `amlops package`: a copy of the repository's extension sources (so --rev-version and broken
manifests never touch the real tree), the amlops wheel built once per session, and the package built from them."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from support import REPO

EXTENSION_SOURCES = ("vss-extension.json", "LICENSE", "extension", "tasks", "docs/tasks")


WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE")


@pytest.fixture(scope="session")
def wheel_source(tmp_path_factory) -> Path:
    """A snapshot of what the wheel is built from (src/ and the project files)."""
    snapshot = tmp_path_factory.mktemp("wheel-source")
    shutil.copytree(REPO / "src", snapshot / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in WHEEL_SOURCES:
        shutil.copy2(REPO / name, snapshot / name)
    return snapshot


@pytest.fixture(scope="session")
def wheel(tmp_path_factory, wheel_source: Path) -> Path:
    """The amlops wheel as `amlops package` builds it (setuptools, SOURCE_DATE_EPOCH, normalized)."""
    from amlops.packaging.package import build_reproducible_wheel

    return build_reproducible_wheel(tmp_path_factory.mktemp("wheel"), wheel_source)


@pytest.fixture(autouse=True)
def wheel_cache_in_temp(tmp_path_factory, monkeypatch) -> None:
    """`amlops package` caches the wheels it builds; tests keep that cache out of the user's folder."""
    monkeypatch.setenv("AMLOPS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "amlops-cache"))


def copy_sources(target: Path) -> Path:
    """vss-extension.json, LICENSE, extension/ and tasks/ copied to target (the package's --root)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in EXTENSION_SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def make_root(tmp_path: Path):
    """make_root(name) -> a fresh copy of the extension sources under tmp_path/name."""
    return lambda name="root": copy_sources(tmp_path / name)


@pytest.fixture
def root(make_root) -> Path:
    return make_root()


@pytest.fixture(scope="session")
def built(tmp_path_factory, wheel: Path) -> Path:
    """The package of an unchanged copy of the sources, built once per session."""
    from amlops.packaging.package import PackageOptions, package_extension

    base = tmp_path_factory.mktemp("built")
    result = package_extension(PackageOptions(root=copy_sources(base / "root"), out=base / "out", wheel=wheel))
    return result.path


@pytest.fixture(scope="session")
def unzipped(tmp_path_factory, built: Path) -> Path:
    folder = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(built) as archive:
        archive.extractall(folder)
    return folder
