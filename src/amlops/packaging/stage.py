"""Stage Azure DevOps task folders: task.json, icon, the Node launcher, the amlops wheel and its constraints.

`build_wheel` builds the wheel with the PEP 517 backend (setuptools, in process when the installed one
is recent enough) from a copy of the source tree, so concurrent builds never share a `build/` folder.
`stage_task` lays out one task folder as the agent will find it inside the extension.
`python -m amlops.packaging.stage --freeze-constraints FILE` regenerates the pinned constraints from a fresh
resolve of the `local` and `azure` extras.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Iterator
from pathlib import Path

from amlops.errors import AmlopsError

REPO_ROOT = Path(__file__).resolve().parents[3]
TASKS_DIR = REPO_ROOT / "tasks"
LAUNCHER = REPO_ROOT / "extension" / "launcher.js"
CONSTRAINTS = TASKS_DIR / "constraints.txt"
TASK_NAMES = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci", "AmlSmokeTest", "AmlDeployOnlineEndpoint")
RUNTIME_EXTRAS = ("local", "azure")
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")
SOURCE_IGNORED = ("__pycache__", "*.pyc", "*.egg-info")
# The backend's wheel is rewritten by archive.normalize_wheel, which compresses it: deflating it here too is waste.
_STORED = {"--build-option": ["--compression=stored"]}
MIN_SETUPTOOLS = 77  # pyproject.toml's build-system requirement (an SPDX `license` string)


def build_wheel(out_dir: Path, source: Path = REPO_ROOT) -> Path:
    """Build the amlops wheel into out_dir (created) and return its path.

    setuptools' PEP 517 backend is called in this process when the installed setuptools satisfies
    pyproject's build requirement (no isolated environment to create and fill from the index, seconds
    saved); otherwise `pip wheel` builds it in an isolated environment."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amlops-build-") as scratch:
        tree = copy_source_tree(source, Path(scratch) / "src-tree")
        built = Path(scratch) / "dist"
        if in_process_backend() is not None:
            _build_in_process(tree, built)
        else:
            _build_isolated(tree, built)
        wheels = sorted(built.glob("amlops-*.whl"))
        if len(wheels) != 1:
            raise AmlopsError(f"expected one amlops wheel from the build, got {len(wheels)}")
        target = out_dir / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def copy_source_tree(source: Path, tree: Path) -> Path:
    """What the wheel is built from (src/ and the project files), copied so builds never share `build/`."""
    tree.mkdir(parents=True)
    for name in _SOURCE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, tree / name)
    shutil.copytree(source / "src", tree / "src", ignore=shutil.ignore_patterns(*SOURCE_IGNORED))
    return tree


def source_digest(source: Path) -> str:
    """A hash of what copy_source_tree copies (names and bytes): equal digests build equal wheels."""
    digest = hashlib.sha256()
    files = [source / name for name in _SOURCE_FILES if (source / name).is_file()]
    files += sorted(path for path in (source / "src").rglob("*") if path.is_file() and not any(
        fnmatch.fnmatch(part, pattern) for part in path.relative_to(source).parts for pattern in SOURCE_IGNORED))
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def in_process_backend() -> str | None:
    """`setuptools <version>` when the installed setuptools can build amlops (pyproject: setuptools>=77).

    Read from its metadata: importing setuptools costs a third of a second, only worth paying to build."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return None
    major = re.match(r"\d+", version)
    return f"setuptools {version}" if major and int(major.group()) >= MIN_SETUPTOOLS else None


def _build_in_process(tree: Path, built: Path) -> None:
    from setuptools import build_meta

    output = io.StringIO()
    previous = os.getcwd()
    os.chdir(tree)  # the backend builds the project in the current directory
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), _entry_points_read_once():
            build_meta.build_wheel(str(built), config_settings=_STORED)
    except Exception as error:  # noqa: BLE001 - setuptools raises many kinds; one line for the user
        raise AmlopsError(f"building the amlops wheel failed: {_last_line(output.getvalue()) or error}; run "
                          "`pip wheel --no-deps .` to see the whole error") from None
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _entry_points_read_once() -> Iterator[None]:
    """setuptools asks importlib.metadata for entry points 16 times per build, each a scan of every installed
    distribution (a second in a full environment, where pip's isolated one has a handful); the installed
    distributions do not change during the build, so they are read once."""
    original = importlib.metadata.entry_points
    everything = original()

    def read_once(**params):
        return everything.select(**params) if params else everything
    importlib.metadata.entry_points = read_once
    try:
        yield
    finally:
        importlib.metadata.entry_points = original


def _build_isolated(tree: Path, built: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
               "-q", "-w", str(built), str(tree)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AmlopsError(f"building the amlops wheel failed: {_last_line(result.stderr or result.stdout)}; "
                          "run `pip wheel --no-deps .` to see the whole error")


def stage_task(task_name: str, out_dir: Path, wheel_path: Path, constraints_path: Path = CONSTRAINTS,
               tasks_dir: Path = TASKS_DIR, launcher: Path = LAUNCHER) -> Path:
    """Lay out `out_dir/<task_name>/` with task.json, icon.png, launcher.js, the wheel and constraints.txt."""
    source = Path(tasks_dir) / task_name
    required = [source / "task.json", source / "icon.png", Path(launcher), Path(wheel_path), Path(constraints_path)]
    missing = [str(path) for path in required if not path.is_file()]
    if missing:
        raise AmlopsError(f"cannot stage {task_name}: missing {', '.join(missing)}")
    target = Path(out_dir) / task_name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(source / "task.json", target / "task.json")
    shutil.copy2(source / "icon.png", target / "icon.png")
    shutil.copy2(launcher, target / "launcher.js")
    shutil.copy2(wheel_path, target / Path(wheel_path).name)
    shutil.copy2(constraints_path, target / "constraints.txt")
    return target


def stage_all(out_dir: Path, wheel_path: Path, constraints_path: Path = CONSTRAINTS) -> dict[str, Path]:
    return {name: stage_task(name, out_dir, wheel_path, constraints_path) for name in TASK_NAMES}


def freeze_constraints(target: Path, wheel_path: Path | None = None) -> Path:
    """Resolve amlops[local,azure] in a fresh virtual environment and write its pins to target."""
    with tempfile.TemporaryDirectory(prefix="amlops-freeze-") as scratch:
        wheel = wheel_path or build_wheel(Path(scratch) / "wheel")
        env_dir = Path(scratch) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
        extras = ",".join(RUNTIME_EXTRAS)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"amlops[{extras}] @ {Path(wheel).as_uri()}"],
                       check=True)
        frozen = subprocess.run([str(python), "-m", "pip", "freeze", "--exclude", "amlops"], check=True,
                                capture_output=True, text=True).stdout
    header = ("# Pinned runtime dependencies of amlops[local,azure], installed with the amlops wheel by "
              "extension/launcher.js\n# (pip/uv install -c constraints.txt). Regenerate: python -m "
              "amlops.packaging.stage --freeze-constraints tasks/constraints.txt\n")
    pins = [line for line in frozen.splitlines() if line and not line.lower().startswith(("pip==", "setuptools=="))]
    Path(target).write_text(header + "\n".join(pins) + "\n", encoding="utf-8")
    return Path(target)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amlops.packaging.stage", description=__doc__)
    parser.add_argument("--out", type=Path, help="stage every task into this folder")
    parser.add_argument("--freeze-constraints", type=Path, metavar="FILE", help="regenerate the constraints file")
    args = parser.parse_args(argv)
    if args.freeze_constraints:
        print(freeze_constraints(args.freeze_constraints))
    if args.out:
        wheel = build_wheel(args.out / "_wheel")
        for name, path in stage_all(args.out, wheel).items():
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
