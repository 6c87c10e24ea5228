"""`amlops package`: vss-extension.json + tasks/ -> `<publisher>.<id>-<version>.vsix`, without tfx-cli.

Order: read and validate the manifest and every task.json (nothing built yet); build the amlops wheel
reproducibly; stage the package root (task folders via `stage.stage_task`); check part names, handler targets and
size; write the three generated parts and the zip in memory; then write the .vsix (atomically) and, with
`--rev-version`, the bumped versions back into vss-extension.json and task.json. Any problem stops before the
first write.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from amlops.errors import AmlopsError
from amlops.packaging import stage
from amlops.packaging.archive import ZIP_EPOCH, normalize_wheel, zip_bytes
from amlops.packaging.helplinks import repository_base, with_absolute_help
from amlops.packaging.manifest import (MANIFEST_NAME, TaskRef, apply_overrides, bump_patch, bump_version,
                                       dev_overrides, dev_task_id, get, inside_root, key_of, load_manifest,
                                       normalize_path, overrides_from, read_json, rewrite_json, task_refs)
from amlops.packaging.parts import (CONTENT_TYPES, GENERATED, VSIX_MANIFEST, VSO_MANIFEST, Part, part_name_problems,
                                    plan_parts)
from amlops.packaging.validate import (fail_on, handler_problems, manifest_problems, size_problems,
                                       task_problems)
from amlops.packaging.vsix import content_types, vsix_manifest, vso_manifest

LAUNCHER = PurePosixPath("extension/launcher.js")
CONSTRAINTS = PurePosixPath("tasks/constraints.txt")


@dataclass(frozen=True)
class PackageOptions:
    root: Path = Path(".")
    out: Path | None = None
    publisher: str | None = None
    override: str | None = None
    overrides_file: Path | None = None
    rev_version: bool = False
    dev: bool = False
    wheel: Path | None = None
    stage_dir: Path | None = None
    no_cache: bool = False


@dataclass(frozen=True)
class TaskInfo:
    name: str
    id: str
    version: str
    folder: str


@dataclass(frozen=True)
class PackageResult:
    path: Path
    publisher: str
    extension_id: str
    version: str
    size: int
    parts: list[str]
    tasks: list[TaskInfo]
    warnings: list[str]
    seconds: dict[str, float]


@dataclass
class _Plan:
    root: Path
    source: dict  # vss-extension.json as written back (version bumped with --rev-version)
    manifest: dict  # what is packaged: overrides and flavour applied
    bumped: dict[TaskRef, dict] = field(default_factory=dict)  # task.json as written back
    staged: dict[TaskRef, dict] = field(default_factory=dict)  # task.json as packaged


def package_extension(options: PackageOptions) -> PackageResult:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if options.stage_dir and Path(options.stage_dir).exists() and any(Path(options.stage_dir).iterdir()):
        raise AmlopsError(f"--stage-dir {options.stage_dir} is not empty; pass a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="amlops-package-") as scratch:
        with _timed(seconds, "validate"):
            plan = prepare(options, Path(scratch))
        with _timed(seconds, "wheel"):
            wheel = Path(options.wheel) if options.wheel else build_reproducible_wheel(
                Path(scratch) / "wheel", plan.root, cache=None if options.no_cache else wheel_cache())
        layout = _layout_dir(options.stage_dir, Path(scratch) / "layout")
        with _timed(seconds, "stage"):
            fail_on(stage_layout(plan, layout, wheel))
        with _timed(seconds, "zip"):
            names, data, warnings = assemble(plan, layout)
    target = output_path(options.out, plan.manifest)
    _write_atomically(target, data)
    if options.rev_version:
        write_back_versions(plan)
    seconds["total"] = time.perf_counter() - started
    return PackageResult(target, get(plan.manifest, "publisher"), get(plan.manifest, "id"),
                         get(plan.manifest, "version"), len(data), names, _task_infos(plan), warnings, seconds)


# -- reading and validating -----------------------------------------------------------------------------------------
def prepare(options: PackageOptions, scratch: Path) -> _Plan:
    """The manifest and task.json files as they will be packaged. On any problem, the files are also staged with a
    stand-in wheel so that part-name and handler problems are reported in the same message, before any build."""
    root = Path(options.root).resolve()
    source = load_manifest(root)
    problems: list[str] = []
    bump_error = None
    if options.rev_version:
        try:
            source = _with(source, "version", bump_version(get(source, "version")))
        except AmlopsError as error:
            bump_error = str(error)
    manifest = apply_overrides(source, overrides_from(options.override, options.overrides_file, options.publisher))
    if options.dev:
        manifest = apply_overrides(manifest, dev_overrides(manifest))
    problems += manifest_problems(manifest)
    if bump_error and not any(f"{MANIFEST_NAME}: version " in problem for problem in problems):
        problems.append(bump_error)
    plan = _Plan(root, source, manifest)
    problems += _read_tasks(plan, options)
    if problems:
        probe = scratch / "probe"
        probe.mkdir()
        problems += stage_layout(plan, probe, _stand_in_wheel(scratch, options.wheel, root))
        problems += layout_problems(plan, probe)[1]
    fail_on(problems)
    return plan


def _read_tasks(plan: _Plan, options: PackageOptions) -> list[str]:
    problems = []
    for ref in task_refs(plan.manifest):
        task = _read_task(plan.root, ref)
        plan.bumped[ref] = task
        if options.rev_version and isinstance(task, dict):
            try:
                plan.bumped[ref] = bump_patch(task, f"{ref.folder}/task.json")
            except AmlopsError as error:
                problems.append(str(error))
        plan.staged[ref] = _dev_task(plan.bumped[ref], get(plan.manifest, "id")) if options.dev \
            else plan.bumped[ref]
    return problems + task_problems(plan.manifest, plan.staged)


def _stand_in_wheel(scratch: Path, wheel: Path | None, root: Path) -> Path:
    """An empty file named like the wheel that will be shipped, to check the layout before building it."""
    name = Path(wheel).name if wheel else "amlops-0-py3-none-any.whl"
    pyproject = root / "pyproject.toml"
    found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.M) \
        if not wheel and pyproject.is_file() else None
    if found:
        name = f"amlops-{found.group(1)}-py3-none-any.whl"
    path = scratch / "stand-in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _read_task(root: Path, ref: TaskRef) -> Any:
    path = root / ref.folder / "task.json"
    if not path.is_file():
        return f"{ref.folder}/task.json does not exist (contribution {ref.contribution_id!r}); fix properties.name"
    try:
        return read_json(path, f"{ref.folder}/task.json")
    except AmlopsError as error:
        return str(error)


def _dev_task(task: Any, extension_id: str) -> Any:
    if not isinstance(task, dict):
        return task
    dev = copy.deepcopy(task)
    dev["id"] = dev_task_id(task.get("id", ""), extension_id)
    if isinstance(dev.get("description"), str):
        dev["description"] = "(dev build) " + dev["description"]
    return dev


def _with(manifest: dict, name: str, value: Any) -> dict:
    result = dict(manifest)
    result[key_of(result, name) or name] = value
    return result


# -- the wheel ----------------------------------------------------------------------------------------------------
def build_reproducible_wheel(out_dir: Path, source: Path, cache: Path | None = None) -> Path:
    """stage.build_wheel with SOURCE_DATE_EPOCH set (fixed entry times), then rewritten deterministically.

    With `cache` (a folder), a wheel built in process is kept under a key of the source content, the backend's
    version and SOURCE_DATE_EPOCH, and an unchanged source is not built again."""
    if not (Path(source) / "pyproject.toml").is_file():
        raise AmlopsError(f"{source} has no pyproject.toml to build the amlops wheel from; run in the repository "
                          "root or pass --wheel PATH")
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or str(ZIP_EPOCH)
    backend = stage.in_process_backend()
    key = hashlib.sha256(f"{backend}\0{epoch}\0{stage.source_digest(Path(source))}".encode()).hexdigest()[:24]
    cached = _cached_wheel(cache, key) if cache is not None and backend else None
    if cached is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(cached, out_dir / cached.name))
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = epoch
    try:
        wheel = normalize_wheel(stage.build_wheel(out_dir, source))
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
    if cache is not None and backend:
        _keep(cache, key, wheel)
    return wheel


def wheel_cache() -> Path:
    """Where `amlops package` keeps the wheels it built (AMLOPS_CACHE_DIR, else the user's cache folder)."""
    explicit = os.environ.get("AMLOPS_CACHE_DIR")
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amlops"
    return base / "wheels"


def _cached_wheel(cache: Path, key: str) -> Path | None:
    found = sorted((Path(cache) / key).glob("amlops-*.whl")) if (Path(cache) / key).is_dir() else []
    return found[0] if len(found) == 1 else None


def _keep(cache: Path, key: str, wheel: Path) -> None:
    """Store atomically (a folder renamed into place), so a concurrent reader never sees half a wheel."""
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    except OSError:
        return  # no cache this time; the wheel was built
    try:
        shutil.copy2(wheel, scratch / wheel.name)
        os.replace(scratch, Path(cache) / key)
    except OSError:  # another build stored the same key first
        shutil.rmtree(scratch, ignore_errors=True)


# -- staging ------------------------------------------------------------------------------------------------------
def stage_layout(plan: _Plan, layout: Path, wheel: Path) -> list[str]:
    """The package root: the manifest, every `files` path, icons and content, each task folder staged. Returns the
    problems met (a task folder that cannot be staged)."""
    shutil.copy2(plan.root / MANIFEST_NAME, layout / MANIFEST_NAME)
    if plan.source != load_manifest(plan.root):
        rewrite_json(layout / MANIFEST_NAME, plan.source)
    for relative in _paths_to_copy(plan.manifest):
        source, target = plan.root / relative, layout / relative
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    problems = []
    for ref, task in plan.staged.items():
        try:
            _stage_task(plan, ref, task, layout, wheel)
        except AmlopsError as error:
            problems.append(str(error))
    return problems


def _paths_to_copy(manifest: dict) -> list[str]:
    """Every path `files`, `icons`, `screenshots` and `content` name that stays inside the root (others are
    reported)."""
    icons, content = get(manifest, "icons"), get(manifest, "content")
    paths = [e["path"] for e in get(manifest, "files") or [] if isinstance(e, dict) and isinstance(e.get("path"), str)]
    paths += [p for p in (icons.values() if isinstance(icons, dict) else []) if isinstance(p, str)]
    paths += [c["path"] for c in (content.values() if isinstance(content, dict) else [])
              if isinstance(c, dict) and isinstance(c.get("path"), str)]
    screenshots = get(manifest, "screenshots")
    paths += [s["path"] for s in (screenshots if isinstance(screenshots, list) else [])
              if isinstance(s, dict) and isinstance(s.get("path"), str)]
    return [p for p in dict.fromkeys(normalize_path(p) for p in paths if inside_root(p)) if p]


def _stage_task(plan: _Plan, ref: TaskRef, task: Any, layout: Path, wheel: Path) -> None:
    if not isinstance(task, dict):
        return  # already reported
    parent = PurePosixPath(ref.folder).parent
    folder = stage.stage_task(ref.name, layout / parent, wheel, plan.root / CONSTRAINTS,
                              tasks_dir=plan.root / parent, launcher=plan.root / LAUNCHER)
    task = with_absolute_help(task, repository_base(plan.manifest), plan.root)
    if task != read_json(folder / "task.json"):
        rewrite_json(folder / "task.json", task)


def _layout_dir(stage_dir: Path | None, default: Path) -> Path:
    layout = Path(stage_dir) if stage_dir else default
    layout.mkdir(parents=True, exist_ok=True)
    return layout


# -- the package ------------------------------------------------------------------------------------------------
def layout_problems(plan: _Plan, layout: Path) -> tuple[list[Part], list[str]]:
    """The parts of a staged root, and the problems with them: missing files, part names, handler targets."""
    parts, problems = plan_parts(layout, plan.manifest)
    for ref, task in plan.staged.items():
        if isinstance(task, dict):
            problems += handler_problems(task, layout / ref.folder, f"{ref.folder}/task.json")
    return parts, problems + part_name_problems(list(GENERATED) + [part.name for part in parts])


def assemble(plan: _Plan, layout: Path) -> tuple[list[str], bytes, list[str]]:
    """(part names in zip order, the zip, warnings); raises on bad part names, missing handlers or size."""
    parts, problems = layout_problems(plan, layout)
    fail_on(problems)
    generated = [(CONTENT_TYPES, content_types(parts)), (VSIX_MANIFEST, vsix_manifest(plan.manifest, parts)),
                 (VSO_MANIFEST, vso_manifest(plan.manifest))]
    entries = [(name, text.encode("utf-8"), 0o644) for name, text in generated]
    entries += [(part.name, part.read(), 0o644) for part in sorted(parts, key=lambda p: p.name)]
    data = zip_bytes(entries)
    too_big, warnings = size_problems(len(data))
    fail_on(too_big)
    return [name for name, _, _ in entries], data, warnings


def output_path(out: Path | None, manifest: dict) -> Path:
    name = f"{get(manifest, 'publisher')}.{get(manifest, 'id')}-{get(manifest, 'version')}.vsix"
    out = Path(out) if out is not None else Path.cwd()
    return out if out.suffix.lower() == ".vsix" else out / name


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_back_versions(plan: _Plan) -> None:
    """--rev-version's in-place edits, as tfx makes them: the manifest's version and every task.json's Patch."""
    rewrite_json(plan.root / MANIFEST_NAME, plan.source)
    for ref, task in plan.bumped.items():
        rewrite_json(plan.root / ref.folder / "task.json", task)


def _task_infos(plan: _Plan) -> list[TaskInfo]:
    infos = []
    for ref, task in plan.staged.items():
        version = task.get("version", {})
        infos.append(TaskInfo(str(task.get("name")), str(task.get("id")),
                              f"{version.get('Major')}.{version.get('Minor')}.{version.get('Patch')}", ref.folder))
    return infos


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = time.perf_counter() - started
