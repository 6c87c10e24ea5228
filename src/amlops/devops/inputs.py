"""Task inputs: read `INPUT_*` as the agent sets them and check them against the task's own task.json.

task.json (shipped next to the launcher, found through `AMLOPS_TASK_DIR`) is the one source of truth
for names, types, defaults, pick lists and required flags. The agent has already filled in defaults,
expanded `$(variables)` and rooted `filePath` inputs against the repository, so an empty file path
arrives as the repository root: that is detected and treated as "not supplied".
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlops.devops.secrets import input_variable, is_secret_variable
from amlops.errors import AmlopsError

TASK_DIR_VARIABLE = "AMLOPS_TASK_DIR"
_MACRO = re.compile(r"\$\(([A-Za-z0-9_.\- ]+)\)")
_CLAUSE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*(==|!=|=|NotEndsWith|EndsWith|NotContains|Contains)\s*(.*?)\s*$")


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    label: str = ""
    default: str = ""
    required: bool = False
    visible_rule: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def editable(self) -> bool:
        return str(self.properties.get("EditableOptions", "")).lower() == "true"

    @property
    def non_negative_number(self) -> bool:
        return str(self.properties.get("isVariableOrNonNegativeNumber", "")).lower() == "true"

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> "InputSpec":
        default = item.get("defaultValue", "")
        if isinstance(default, bool):
            default = "true" if default else "false"
        return cls(name=item["name"], type=item["type"], label=item.get("label", ""), default=str(default),
                   required=bool(item.get("required", False)), visible_rule=item.get("visibleRule", ""),
                   options=dict(item.get("options") or {}), properties=dict(item.get("properties") or {}))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    id: str
    version: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    directory: Path

    @classmethod
    def load(cls, directory: Path) -> "TaskSpec":
        path = Path(directory) / "task.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except OSError as error:
            raise AmlopsError(f"cannot read {path}: {error.strerror}; reinstall the extension") from None
        except ValueError as error:
            raise AmlopsError(f"{path} is not valid JSON ({error}); reinstall the extension") from None
        version = data.get("version", {})
        return cls(name=data["name"], id=data["id"],
                   version=f"{version.get('Major')}.{version.get('Minor')}.{version.get('Patch')}",
                   inputs=tuple(InputSpec.from_json(item) for item in data.get("inputs", [])),
                   outputs=tuple(item["name"] for item in data.get("outputVariables", [])),
                   directory=Path(directory))

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


def task_directory(env: Mapping[str, str]) -> Path:
    value = env.get(TASK_DIR_VARIABLE, "")
    if not value:
        raise AmlopsError(f"{TASK_DIR_VARIABLE} is not set; start the task through its launcher (node launcher.js)")
    return Path(value)


class Inputs(Mapping[str, Any]):
    """Validated, typed input values: bool, int, float, Path or str; None where optional and empty."""

    def __init__(self, values: dict[str, Any], warnings: list[str]):
        self._values = values
        self.warnings = warnings

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def read_inputs(spec: TaskSpec, env: Mapping[str, str]) -> Inputs:
    """Read and validate every input of `spec`; all problems are reported at once in one AmlopsError."""
    upper_env = {key.upper(): value for key, value in env.items()}
    raw = {item.name: _raw_value(item, upper_env) for item in spec.inputs}
    problems: list[str] = []
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for item in spec.inputs:
        text = raw[item.name]
        if item.type == "filePath":
            text = _unroot(item, text, upper_env)
        if _MACRO.search(text):
            warnings.append(f"input '{item.name}' refers to an undefined variable: {text}")
        if not text and item.required and visible(item.visible_rule, raw):
            problems.append(_missing(item))
            continue
        try:
            values[item.name] = _convert(item, text, upper_env)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise AmlopsError(f"{spec.name}: " + "; ".join(problems))
    return Inputs(values, warnings)


def _raw_value(item: InputSpec, upper_env: Mapping[str, str]) -> str:
    value = upper_env.get(input_variable(item.name))
    if value is None:
        value = item.default
    return expand_macros(value.strip(), upper_env)


# The agent's own variables a value may still refer to. Nothing else is expanded a second time: a `$(X)` the
# agent left came from the author's text or from a variable's value, and expanding it from this environment
# would turn `$(ENDPOINT_AUTH_PARAMETER_<id>_SERVICEPRINCIPALKEY)` in a variable group into the secret itself.
_AGENT_NAMESPACES = ("AGENT_", "BUILD_", "SYSTEM_", "PIPELINE_", "RELEASE_", "ENVIRONMENT_")


def expand_macros(value: str, upper_env: Mapping[str, str]) -> str:
    """Expand `$(Agent.TempDirectory)`-style references to the agent's own variables, never to a secret."""
    def replace(match: re.Match) -> str:
        name = match.group(1).replace(".", "_").replace(" ", "_").upper()
        if not name.startswith(_AGENT_NAMESPACES) or is_secret_variable(name):
            return match.group(0)
        return upper_env.get(name, match.group(0))
    return _MACRO.sub(replace, value)


def working_directory(upper_env: Mapping[str, str]) -> str:
    return (upper_env.get("SYSTEM_DEFAULTWORKINGDIRECTORY") or upper_env.get("BUILD_SOURCESDIRECTORY")
            or os.getcwd())


def _unroot(item: InputSpec, text: str, upper_env: Mapping[str, str]) -> str:
    """'' when the agent rooted an empty path to the repository root; the default when optional."""
    roots = {_normal(upper_env.get(name, "")) for name in
             ("SYSTEM_DEFAULTWORKINGDIRECTORY", "BUILD_SOURCESDIRECTORY", "BUILD_REPOSITORY_LOCALPATH")}
    roots.discard("")
    if text and _normal(text) not in roots:
        return text
    if item.required:
        return ""
    return expand_macros(item.default, upper_env)


def _normal(path: str) -> str:
    if not path:
        return ""
    normal = os.path.normpath(os.path.abspath(path))
    return os.path.normcase(normal)


def _missing(item: InputSpec) -> str:
    hint = " (an empty file path arrives as the repository root)" if item.type == "filePath" else ""
    return f"input '{item.name}' ({item.label}) is required{hint}; set it in the task"


def _convert(item: InputSpec, text: str, upper_env: Mapping[str, str]) -> Any:
    kind = item.type
    if kind == "boolean":
        return _boolean(item, text)
    if kind == "int":
        return _integer(item, text)
    if kind in ("pickList", "radio") and item.options and not item.editable:
        return _choice(item, text)
    if kind == "filePath":
        return Path(working_directory(upper_env), text) if text else None
    if item.non_negative_number:
        return _number(item, text)
    return text


def _boolean(item: InputSpec, text: str) -> bool:
    lowered = (text or item.default or "false").lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"input '{item.name}' must be true or false, got '{text}'")
    return lowered == "true"


def _integer(item: InputSpec, text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"input '{item.name}' must be a whole number, got '{text}'") from None


def _number(item: InputSpec, text: str) -> float | None:
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise ValueError(f"input '{item.name}' must be a number >= 0, got '{text}'")
    return number


def _choice(item: InputSpec, text: str) -> str:
    if not text:
        return ""
    for key in item.options:
        if key.lower() == text.lower():
            return key
    allowed = ", ".join(item.options)
    raise ValueError(f"input '{item.name}' must be one of {allowed}; got '{text}'")


def visible(rule: str, raw: Mapping[str, str]) -> bool:
    """Evaluate a task.json visibleRule (`a = x && b != y || c = z`) against raw input values."""
    if not rule or not rule.strip():
        return True
    return any(all(_clause(clause, raw) for clause in part.split("&&")) for part in rule.split("||"))


def _clause(clause: str, raw: Mapping[str, str]) -> bool:
    match = _CLAUSE.match(clause)
    if not match:
        raise AmlopsError(f"task.json visibleRule clause not understood: '{clause.strip()}'; fix the task.json")
    name, operator, expected = match.groups()
    actual = (raw.get(name) or "").lower()
    expected = expected.strip("\"'").lower()
    outcomes = {"=": actual == expected, "==": actual == expected, "!=": actual != expected,
                "EndsWith": actual.endswith(expected), "NotEndsWith": not actual.endswith(expected),
                "Contains": expected in actual, "NotContains": expected not in actual}
    return outcomes[operator]
