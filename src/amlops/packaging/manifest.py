"""vss-extension.json: loading, overrides merged as tfx-cli merges them, the dev flavour, version bumps and the
in-place edits `--rev-version` makes to vss-extension.json and task.json (formatting kept)."""
from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from amlops.errors import AmlopsError

MANIFEST_NAME = "vss-extension.json"
TASK_CONTRIBUTION = "ms.vss-distributed-task.task"
DEV_SUFFIX = "-dev"
# Keys whose values tfx-cli appends to (instead of replacing) when an override partial carries them.
_APPENDED = {"tags", "categories", "galleryflags", "files", "contributions", "contributiontypes", "scopes", "targets",
             "constraints"}
_MERGED = {"links", "icons", "content"}
_ALIASES = {"extensionid": "id", "namespace": "id"}


@dataclass(frozen=True)
class TaskRef:
    """A task contribution: its id and the manifest-relative folder (properties.name) holding task.json."""

    contribution_id: str
    folder: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.folder).name


def read_json(path: Path, what: str | None = None) -> Any:
    label = what or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise AmlopsError(f"cannot read {label}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AmlopsError(f"{label} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                          "fix the file") from None


def load_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise AmlopsError(f"no {MANIFEST_NAME} in {Path(root).resolve()}; run amlops package in the repository root "
                          "or pass --root")
    manifest = read_json(path, MANIFEST_NAME)
    if not isinstance(manifest, dict):
        raise AmlopsError(f"{MANIFEST_NAME} must hold a JSON object; fix the file")
    return manifest


def normalize_path(path: str) -> str:
    """A manifest path as a package-relative POSIX path: backslashes to slashes, no `./`, no trailing slash."""
    text = str(path).replace("\\", "/")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    return "/".join(parts)


def inside_root(path: str) -> bool:
    """Whether a manifest path stays inside the extension root (relative, no `..`, no drive)."""
    text = str(path).replace("\\", "/")
    return not (text.startswith("/") or re.match(r"^[A-Za-z]:", text) or ".." in text.split("/"))


def key_of(manifest: dict, name: str) -> str | None:
    """The key of `manifest` tfx treats as `name` (keys are matched ignoring case, id aliases included)."""
    wanted = _ALIASES.get(name.lower(), name.lower())
    return next((key for key in manifest if _ALIASES.get(key.lower(), key.lower()) == wanted), None)


def get(manifest: dict, name: str, default: Any = None) -> Any:
    key = key_of(manifest, name)
    return manifest[key] if key is not None else default


def overrides_from(override_json: str | None, overrides_file: Path | None, publisher: str | None) -> dict:
    """tfx's order: the overrides file, then --override on top of it, then --publisher on top of both."""
    merged: dict = {}
    if overrides_file is not None:
        text = Path(overrides_file).read_text(encoding="utf-8-sig").strip()
        merged = _deep_merge(merged, _object(text, f"--overrides-file {overrides_file}")) if text else merged
    if override_json:
        merged = _deep_merge(merged, _object(override_json, "--override"))
    if publisher:
        merged["publisher"] = publisher
    return merged


def apply_overrides(manifest: dict, overrides: dict) -> dict:
    """The manifest with overrides applied as tfx applies its override partial: single values replaced in place,
    list values (tags, contributions, files...) appended, links/icons/content merged key by key."""
    result = copy.deepcopy(manifest)
    for name, value in overrides.items():
        key = key_of(result, name)
        if key is None:
            result[name] = copy.deepcopy(value)
        elif key.lower() in _APPENDED and isinstance(result[key], list) and isinstance(value, list):
            result[key] = result[key] + copy.deepcopy(value)
        elif key.lower() in _MERGED and isinstance(result[key], dict) and isinstance(value, dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def dev_overrides(manifest: dict) -> dict:
    """The dev flavour: another extension id and name, never public (task ids: `dev_task_id`)."""
    return {"id": f"{get(manifest, 'id', '')}{DEV_SUFFIX}", "name": f"{get(manifest, 'name', '')} (dev)",
            "public": False}


def dev_task_id(task_id: str, extension_id: str) -> str:
    """The dev flavour's id of a task: uuid5 of the production id, stable across builds."""
    try:
        namespace = uuid.UUID(str(task_id))
    except ValueError:
        namespace = uuid.NAMESPACE_URL
    return str(uuid.uuid5(namespace, f"{extension_id}/{task_id}"))


def task_refs(manifest: dict) -> list[TaskRef]:
    refs = []
    for contribution in get(manifest, "contributions") or []:
        if not isinstance(contribution, dict) or contribution.get("type") != TASK_CONTRIBUTION:
            continue
        properties = contribution.get("properties")
        folder = properties.get("name") if isinstance(properties, dict) else None
        if isinstance(folder, str) and normalize_path(folder) and inside_root(folder):
            refs.append(TaskRef(str(contribution.get("id", "")), normalize_path(folder)))
    return refs


def bump_version(version: Any) -> str:
    """tfx's --rev-version: the last number of the version plus one (`0.1.0` -> `0.1.1`)."""
    numbers = str(version).split(".")
    if not all(number.isdigit() for number in numbers):
        raise AmlopsError(f"{MANIFEST_NAME}: cannot bump version {version!r}; use numbers like 0.1.0")
    numbers[-1] = str(int(numbers[-1]) + 1)
    return ".".join(numbers)


def bump_patch(task: dict, label: str) -> dict:
    """A copy of task.json with version.Patch plus one (kept a string when it was one)."""
    version = task.get("version") if isinstance(task.get("version"), dict) else None
    patch = version.get("Patch") if version else None
    if isinstance(patch, bool) or not (isinstance(patch, int) or (isinstance(patch, str) and patch.isdigit())):
        raise AmlopsError(f"{label}: cannot bump version.Patch {patch!r}; make it a number")
    bumped = copy.deepcopy(task)
    bumped["version"]["Patch"] = int(patch) + 1 if isinstance(patch, int) else str(int(patch) + 1)
    return bumped


def rewrite_json(path: Path, updated: Any) -> None:
    """Write `updated` into the JSON file at path changing only the values that differ when one edited value
    explains the difference (as tfx's json-in-place does); otherwise rewrite the file with 2-space indentation."""
    raw = Path(path).read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    new_text = _edit_in_place(text, updated)
    Path(path).write_bytes((b"\xef\xbb\xbf" if bom else b"") + new_text.encode("utf-8"))


def _edit_in_place(text: str, updated: Any) -> str:
    for pattern, value in _edits(updated):
        for match in re.finditer(pattern, text):
            candidate = text[:match.start(1)] + value + text[match.end(1):]
            try:
                if json.loads(candidate) == updated:
                    return candidate
            except json.JSONDecodeError:
                continue
    return json.dumps(updated, indent=2, ensure_ascii=False) + "\n"


def _edits(updated: Any) -> list[tuple[str, str]]:
    edits = []
    if isinstance(updated, dict) and isinstance(updated.get("version"), str):
        edits.append((r'"version"\s*:\s*("(?:[^"\\]|\\.)*")', json.dumps(updated["version"])))
    version = updated.get("version") if isinstance(updated, dict) else None
    if isinstance(version, dict) and "Patch" in version:
        edits.append((r'"Patch"\s*:\s*("[^"]*"|\d+)', json.dumps(version["Patch"])))
    return edits


def _object(text: str, label: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise AmlopsError(f"{label} is not valid JSON ({error.msg} at column {error.colno}); "
                          "pass a JSON object such as '{\"public\": true}'") from None
    if not isinstance(value, dict):
        raise AmlopsError(f"{label} must be a JSON object such as '{{\"public\": true}}'")
    return value


def _deep_merge(base: dict, extra: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(result.get(key), dict) and isinstance(value, dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
