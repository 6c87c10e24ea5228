"""A cached virtual environment for the Azure ML inference server, separate from amlops' own.

azureml-inference-server-http pins OpenTelemetry 1.33 while azure-ai-ml's telemetry wants newer
releases; pip installs them into one environment only by downgrading azure-monitor-opentelemetry, and
breaks when they are installed one after the other. Like the inference image on ACI, the server gets
its own environment: the server plus the scoring requirements, created once per (server version,
Python version, requirements) under the cache folder, with a lock and a completion marker.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from amlops.errors import AmlopsError

SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
MARKER = ".amlops-complete"
BYTECODE_MARKER = ".amlops-bytecode"
LOCK_STALE_S = 900


def cache_root() -> Path:
    explicit = os.environ.get("AMLOPS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amlops"


def server_python(requirements_file: Path | None, on_info: Callable[[str], None] = print) -> Path:
    """The Python of an environment that has the inference server and the scoring requirements."""
    override = os.environ.get("AMLOPS_SERVER_PYTHON")
    if override:
        return Path(override)
    requirements = requirements_file if requirements_file is not None and requirements_file.is_file() else None
    return cached_python("inference-server", [SERVER_REQUIREMENT], on_info,
                         what="the inference server environment",
                         fallback=f"set AMLOPS_SERVER_PYTHON to a Python that has {SERVER_REQUIREMENT}",
                         requirements=requirements)


def cached_python(kind: str, packages: list[str], on_info: Callable[[str], None], what: str,
                  fallback: str, requirements: Path | None = None) -> Path:
    """The Python of a virtual environment with `packages` and a requirements file (installed with `-r`, so
    comments, options and hashes mean what pip says they mean), created once per (kind, Python version,
    packages, requirements) under the cache folder, with a lock and a completion marker; AmlopsError (naming
    `fallback`) if it cannot be created."""
    wanted = [*packages, *(["-r", requirements.read_text(encoding="utf-8")] if requirements else [])]
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    folder = cache_root() / kind / f"py{sys.version_info[0]}{sys.version_info[1]}-{key}"
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if (folder / MARKER).is_file() and (folder / BYTECODE_MARKER).is_file():
        return python
    with _locked(folder.with_suffix(".lock")):
        if not (folder / MARKER).is_file():
            _create(folder, python, [*packages, *(["-r", str(requirements)] if requirements else [])], on_info,
                    what, fallback)
        if not (folder / BYTECODE_MARKER).is_file():
            _compile(folder, python, on_info, what)
    return python


def _create(folder: Path, python: Path, packages: list[str], on_info: Callable[[str], None], what: str,
            fallback: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    uv = _uv()
    on_info(f"creating {what} in {folder} (once; {'uv' if uv else 'pip, slower than uv'})")
    started = time.monotonic()
    if uv:
        _call([*uv, "venv", "-q", "--python", sys.executable, str(folder)], folder, what, fallback)
        if packages:
            _call([*uv, "pip", "install", "-q", "--python", str(python), *packages], folder, what, fallback)
    else:
        _call([sys.executable, "-m", "venv", str(folder)], folder, what, fallback)
        if packages:
            _call([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], folder,
                  what, fallback)
    (folder / MARKER).write_text("\n".join(packages) + "\n")
    on_info(f"{what} ready in {time.monotonic() - started:.1f} s")


def _compile(folder: Path, python: Path, on_info: Callable[[str], None], what: str) -> None:
    """Bytecode for every module of the environment, written once: with PYTHONDONTWRITEBYTECODE set (as in
    many CI images) the server would otherwise compile its ~4,000 modules from source at every start (about
    half of its start time). A module that does not compile is left to the import that needs it."""
    on_info(f"compiling bytecode (once) for {what} in {folder}")
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", str(folder)], capture_output=True)
    (folder / BYTECODE_MARKER).write_text("compileall\n")


def _uv() -> list[str] | None:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        return None


def _call(command: list[str], folder: Path, what: str, fallback: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise AmlopsError(f"could not create {what} ({' '.join(command[:3])} ... failed); check network access "
                          f"to your package index (PIP_INDEX_URL), or {fallback}:\n{tail}")


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive-create lock file; one left by a crashed process is taken over once stale."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_STALE_S
    while True:
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(descriptor, str(os.getpid()).encode())
            os.close(descriptor)
            break
        except FileExistsError:
            if _stale(lock) or time.monotonic() > deadline:
                lock.unlink(missing_ok=True)
            time.sleep(0.2)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    from amlops.processes import process_alive

    try:
        pid = int(lock.read_text() or 0)
    except (OSError, ValueError):
        return False
    return not process_alive(pid)
