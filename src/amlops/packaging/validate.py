"""Checks before anything is written, one message per problem: what tfx-cli rejects, what it only warns about and
the Marketplace or Azure DevOps rejects at upload (task.json schema, GUIDs, handler targets, `files` coverage), and
the package size."""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from amlops.errors import AmlopsError
from amlops.packaging import schema_check
from amlops.packaging.manifest import TASK_CONTRIBUTION, TaskRef, get, inside_root, normalize_path

WARN_BYTES = 25 * 1024 * 1024  # Azure DevOps Server's default extension size limit (25 MiB)
MAX_BYTES = 50 * 1000 * 1000  # the Marketplace's limit (50 MB)
ID_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]+$")  # vss-extension schema id_pattern (tfx also allows _)
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")
CATEGORIES = ("Azure Repos", "Azure Boards", "Azure Pipelines", "Azure Test Plans", "Azure Artifacts")
VSS_TARGETS = ("Microsoft.VisualStudio.Services", "Microsoft.VisualStudio.Services.Cloud",
               "Microsoft.TeamFoundation.Server")
OTHER_TARGETS = ("Microsoft.VisualStudio.Services.Integration", "Microsoft.TeamFoundation.Server.Integration",
                 "Microsoft.VisualStudio.Services.Cloud.Integration", "Microsoft.VisualStudio.Offer")
UNSUPPORTED = ("branding", "badges", "galleryproperties", "customerqnasupport",
               "showpricingcalculator")
HANDLERS = ("execution", "prejobexecution", "postjobexecution")
_M = "vss-extension.json"


class PackageValidationError(AmlopsError):
    """The package would be rejected; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        head = f"{len(problems)} problems; nothing was written:\n" if len(problems) > 1 else ""
        super().__init__(head + "\n".join(f"  {p}" if head else p for p in problems))


def fail_on(problems: list[str]) -> None:
    if problems:
        raise PackageValidationError(list(dict.fromkeys(problems)))


# -- the manifest ---------------------------------------------------------------------------------------------------
def manifest_problems(manifest: dict) -> list[str]:
    return (_identity_problems(manifest) + _text_problems(manifest) + _listing_problems(manifest)
            + _target_problems(manifest)
            + _contribution_problems(manifest) + _path_problems(manifest) + _unsupported(manifest))


def _path_problems(manifest: dict) -> list[str]:
    """Every packaged path must stay inside the extension root (tfx accepts absolute paths; we do not)."""
    paths = [(f"files[{i}].path", e.get("path")) for i, e in enumerate(get(manifest, "files") or [])
             if isinstance(e, dict)]
    paths += [(f"icons.{k}", v) for k, v in _object(get(manifest, "icons")).items()]
    paths += [(f"content.{k}.path", v.get("path")) for k, v in _object(get(manifest, "content")).items()
              if isinstance(v, dict)]
    screenshots = get(manifest, "screenshots")
    paths += [(f"screenshots[{i}].path", s.get("path")) for i, s in enumerate(screenshots or [])
              if isinstance(screenshots, list) and isinstance(s, dict)]
    paths += [(f"contribution {c.get('id')!r} properties.name", _object(c.get("properties")).get("name"))
              for c in get(manifest, "contributions") or [] if isinstance(c, dict)
              and c.get("type") == TASK_CONTRIBUTION]
    return [f"{_M}: {where} {path!r} must be a relative path inside the extension root" for where, path in paths
            if isinstance(path, str) and not inside_root(path)]


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _identity_problems(manifest: dict) -> list[str]:
    problems = []
    ext_id, publisher, version = (get(manifest, k) for k in ("id", "publisher", "version"))
    if ext_id is None:
        problems.append(f"{_M}: id is missing; add \"id\", the extension's id within its publisher")
    elif not isinstance(ext_id, str) or not ID_PATTERN.match(ext_id):
        problems.append(f"{_M}: id {ext_id!r} must be letters, digits and dashes, starting with a letter or digit "
                        "(e.g. \"amlops\")")
    if not isinstance(publisher, str) or not publisher:
        problems.append(f"{_M}: publisher is missing; add \"publisher\" or pass --publisher NAME")
    elif not ID_PATTERN.match(publisher):
        problems.append(f"{_M}: publisher {publisher!r} must be a Marketplace publisher id: letters, digits and "
                        "dashes")
    if version is None:
        problems.append(f"{_M}: version is missing; add \"version\": \"0.1.0\"")
    elif not isinstance(version, str) or not VERSION_PATTERN.match(version):
        problems.append(f"{_M}: version {version!r} must be major.minor.patch[.build] numbers, e.g. \"0.1.0\"")
    return problems


def _text_problems(manifest: dict) -> list[str]:
    problems = []
    name = get(manifest, "name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{_M}: name is missing; add a short display name")
    elif len(name) > 200:
        problems.append(f"{_M}: name is {len(name)} characters; the limit is 200")
    description = get(manifest, "description")
    if description is not None and (not isinstance(description, str) or len(description) > 200):
        size = len(description) if isinstance(description, str) else "not a string"
        problems.append(f"{_M}: description must be a string of at most 200 characters (is {size}); move the "
                        "details to the overview page (content.details)")
    if get(manifest, "manifestVersion", 1) not in (1, "1"):
        problems.append(f"{_M}: manifestVersion must be 1")
    if get(manifest, "public") is not None and not isinstance(get(manifest, "public"), bool):
        problems.append(f"{_M}: public must be true or false")
    return problems


def _listing_problems(manifest: dict) -> list[str]:
    problems = []
    categories = get(manifest, "categories")
    if isinstance(categories, str):
        categories = [c for c in categories.split(",") if c]
    if not categories or not isinstance(categories, list):
        problems.append(f"{_M}: categories is missing; add \"categories\": [\"Azure Pipelines\"]")
    else:
        problems += [f"{_M}: category {c!r} is unknown; use one of {', '.join(CATEGORIES)}"
                     for c in categories if c not in CATEGORIES]
    screenshots = get(manifest, "screenshots")
    if screenshots is not None and (not isinstance(screenshots, list) or not all(
            isinstance(s, dict) and isinstance(s.get("path"), str) for s in screenshots)):
        problems.append(f"{_M}: screenshots must be a list of {{\"path\": \"images/screen1.png\"}} objects")
    repository = get(manifest, "repository")
    if repository is not None and (not isinstance(repository, dict) or repository.get("type") != "git"
                                   or not (repository.get("uri") or repository.get("url"))):
        problems.append(f"{_M}: repository must be {{\"type\": \"git\", \"uri\": \"https://...\"}}")
    if not isinstance(get(manifest, "files", []), list):
        problems.append(f"{_M}: files must be a list of {{\"path\": ...}} objects")
    icons = get(manifest, "icons")
    if not isinstance(icons, dict) or not isinstance(icons.get("default"), str):
        problems.append(f"{_M}: icons.default is missing; add a 128x128 PNG, e.g. \"icons\": {{\"default\": "
                        "\"extension/icon.png\"}}")
    return problems


def _target_problems(manifest: dict) -> list[str]:
    targets = get(manifest, "targets")
    if not isinstance(targets, list) or not targets:
        return [f"{_M}: targets is missing; add \"targets\": [{{\"id\": \"Microsoft.VisualStudio.Services\"}}]"]
    problems = []
    for target in targets:
        target_id = target.get("id") if isinstance(target, dict) else None
        if target_id in OTHER_TARGETS:
            problems.append(f"{_M}: target {target_id!r} is not supported by amlops package (it builds "
                            "extensions with contributions); use Microsoft.VisualStudio.Services")
        elif target_id not in VSS_TARGETS:
            problems.append(f"{_M}: target {target_id!r} is not a recognized target; use one of "
                            f"{', '.join(VSS_TARGETS)}")
    return problems


def _contribution_problems(manifest: dict) -> list[str]:
    contributions = get(manifest, "contributions")
    if contributions is not None and not isinstance(contributions, list):
        return [f"{_M}: contributions must be a list of contribution objects"]
    if not contributions and not get(manifest, "contributionTypes"):
        return [f"{_M}: the extension has no contributions; add one ms.vss-distributed-task.task contribution per "
                "task"]
    problems, seen = [], set()
    for index, contribution in enumerate(contributions or []):
        if not isinstance(contribution, dict):
            problems.append(f"{_M}: contributions[{index}] must be an object")
            continue
        missing = [key for key in ("id", "type", "targets") if not contribution.get(key)]
        if missing:
            problems.append(f"{_M}: contributions[{index}] lacks {', '.join(missing)}")
        if contribution.get("id") in seen:
            problems.append(f"{_M}: contribution id {contribution['id']!r} is used twice; contribution ids must be "
                            "unique in the extension")
        seen.add(contribution.get("id"))
        if contribution.get("type") == TASK_CONTRIBUTION and not _task_folder(contribution):
            problems.append(f"{_M}: contribution {contribution.get('id')!r} needs properties.name, the task's folder "
                            "(e.g. \"tasks/MyTask\")")
    return problems


def _task_folder(contribution: dict) -> str:
    folder = (contribution.get("properties") or {}).get("name")
    return normalize_path(folder) if isinstance(folder, str) else ""


def _unsupported(manifest: dict) -> list[str]:
    return [f"{_M}: {key!r} is not supported by amlops package yet; remove it or package with tfx-cli"
            for key in manifest if key.lower() in UNSUPPORTED]


# -- the tasks ------------------------------------------------------------------------------------------------------
def files_cover(manifest: dict, folder: str) -> bool:
    paths = [normalize_path(e["path"]) for e in get(manifest, "files") or [] if isinstance(e, dict)
             and isinstance(e.get("path"), str)]
    return any(p == folder or p == "" or folder.startswith(p + "/") for p in paths)


def task_problems(manifest: dict, tasks: dict[TaskRef, Any]) -> list[str]:
    """`tasks` maps each task contribution to its parsed task.json (or an error message string)."""
    problems: list[str] = []
    versions: dict[tuple[str, str], str] = {}
    owners: dict[str, tuple[str, str, str]] = {}  # id or name -> (label, id, name)
    for ref, task in tasks.items():
        label = f"{ref.folder}/task.json"
        if not files_cover(manifest, ref.folder):
            problems.append(f"{_M}: task folder {ref.folder!r} is not under any `files` path, so it would not be "
                            f"packaged; add {{\"path\": \"{ref.folder}\"}} to files")
        if isinstance(task, str):
            problems.append(task)
            continue
        problems += task_json_problems(task, label)
        problems += _version_problems(task, label, versions, owners)
    return problems


def _version_problems(task: dict, label: str, versions: dict, owners: dict) -> list[str]:
    """One task may ship several Major versions side by side (same id and name, as Microsoft ships AzureCLI V1
    and V2); otherwise every task needs its own id and name, and one Major version of a task is shipped once."""
    task_id, name = str(task.get("id", "")).lower(), str(task.get("name", "")).lower()
    major = str((task.get("version") or {}).get("Major")) if isinstance(task.get("version"), dict) else "?"
    problems = []
    for key, value in (("id", task_id), ("name", name)):
        other = owners.get(f"{key}:{value}")
        if value and other and (other[1], other[2]) != (task_id, name):
            problems.append(f"{label}: {key} {task.get(key)!r} is also the {key} of {other[0]}; every task needs "
                            f"its own {key} (two Major versions of one task share both id and name)")
        owners.setdefault(f"{key}:{value}", (label, task_id, name))
    if task_id and (task_id, major) in versions:
        problems.append(f"{label}: version {major} of task {task.get('name')!r} is also in "
                        f"{versions[(task_id, major)]}; "
                        "versions shipped side by side need different Major numbers")
    versions.setdefault((task_id, major), label)
    return problems


def task_json_problems(task: Any, label: str) -> list[str]:
    if not isinstance(task, dict):
        return [f"{label}: must hold a JSON object"]
    problems, checked = [], set()
    try:
        uuid.UUID(str(task.get("id")))
        if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", str(task.get("id"))):
            raise ValueError
    except ValueError:
        problems.append(f"{label}: id {task.get('id')!r} must be a GUID such as \"{uuid.uuid4()}\"")
        checked.add("id")
    if not isinstance(task.get("category"), str):
        problems.append(f"{label}: category must be a string such as \"Azure Pipelines\", not "
                        f"{type(task.get('category')).__name__}")
        checked.add("category")
    if not isinstance(task.get("friendlyName"), str) or not 1 <= len(task["friendlyName"]) <= 40:
        problems.append(f"{label}: friendlyName must be 1 to 40 characters")
        checked.add("friendlyName")
    if not task.get("instanceNameFormat"):
        problems.append(f"{label}: instanceNameFormat is required")
    for problem in schema_check.problems(task):
        if problem.split(":", 1)[0].split(".")[0].split("[")[0] not in checked:
            problems.append(f"{label}: {problem} (schema: task.schema.json)")
    return problems


def handler_problems(task: dict, folder: Path, label: str) -> list[str]:
    """Every Node/PowerShell/Process handler's target must be a file in the staged task folder."""
    problems = []
    for kind in HANDLERS:
        for runner, handler in (task.get(kind) or {}).items():
            target = handler.get("target") if isinstance(handler, dict) else None
            if not target:
                problems.append(f"{label}: {kind}.{runner}.target is required")
                continue
            target = re.sub(r"\$\(\s*currentdirectory\s*\)", ".", target, flags=re.I)
            if not re.search(r"\$\([^)]+\)", target) and not (folder / target).is_file():
                problems.append(f"{label}: {kind}.{runner}.target {target!r} is not in the staged task folder; "
                                "stage it or fix the target")
    if not any(task.get(kind) for kind in HANDLERS):
        problems.append(f"{label}: no execution handler; add \"execution\": {{\"Node20_1\": {{\"target\": "
                        "\"launcher.js\"}}}}")
    return problems


def size_problems(size: int) -> tuple[list[str], list[str]]:
    """(problems, warnings) for a package of `size` bytes."""
    mib = size / 1024 / 1024
    if size > MAX_BYTES:
        return [f"the package is {mib:.1f} MiB, over the Marketplace's 50 MB limit; ship fewer or smaller files"], []
    if size > WARN_BYTES:
        return [], [f"the package is {mib:.1f} MiB, over Azure DevOps Server's default 25 MiB limit; an on-premises "
                    "server needs a higher limit to install it"]
    return [], []
