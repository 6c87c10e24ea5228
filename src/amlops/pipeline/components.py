"""Loading and validating Azure ML v2 command components (commandComponent schema)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from amlops import names
from amlops.pipeline.model import (
    COMMAND_REFERENCE, INPUT_TYPES, OPTIONAL_GROUP, OUTPUT_TYPES, Component, InputSpec, OutputSpec,
)
from amlops.pipeline.types import type_problem
from amlops.pipeline.yaml_source import YamlMap, check_fields, load_yaml, resolved, where

COMPONENT_FIELDS = {
    "$schema", "type", "name", "version", "display_name", "description", "tags", "is_deterministic",
    "inputs", "outputs", "code", "environment", "command", "resources", "distribution",
    "environment_variables", "additional_includes", "properties",
}
INPUT_FIELDS = {"type", "default", "optional", "description", "enum", "min", "max", "mode"}
OUTPUT_FIELDS = {"type", "description", "mode", "path"}
SCRIPT_IN_COMMAND = re.compile(r"(?:^|[\s;&|])python[\d.]*\s+(?:-u\s+)?([\w./-]+\.py)\b")
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]{0,254}$")


def load_component(path: Path, problems: list[str]) -> Component | None:
    """Load a component YAML file; append one message per problem and return None if unusable."""
    document = load_yaml(path, "component")
    return parse_component(document, path, problems)


def parse_component(document: YamlMap, path: Path, problems: list[str]) -> Component | None:
    before = len(problems)
    check_fields(document, COMPONENT_FIELDS, path, "component", problems)
    kind = document.get("type", "command")
    if kind != "command":
        problems.append(f"{where(path, document, 'type')}: component type '{kind}' is not supported; "
                        "use 'type: command'")
    for required in ("name", "command", "environment"):
        if not document.get(required):
            problems.append(f"{where(path, document)}: component is missing '{required}'; add it")
    name = str(document.get("name", ""))
    if name and not NAME_PATTERN.match(name):
        problems.append(f"{where(path, document, 'name')}: component name '{name}' is invalid; use lowercase "
                        "letters, digits, '_', '-' and '.', starting with a letter or '_'")
    inputs = _parse_inputs(document.get("inputs") or {}, path, problems)
    declared = _names(document.get("inputs")) | _names(document.get("outputs"))
    outputs = _parse_outputs(document.get("outputs") or {}, path, problems)
    code = _check_code(document, path, problems)
    command = str(document.get("command") or "")
    _check_command(document, command, inputs, outputs, declared, code, path, problems)
    _check_environment(document, path, problems)
    if len(problems) > before:
        return None
    return Component(
        path=path, name=name, version=str(document.get("version", "1")), command=command, code=code,
        inputs=inputs, outputs=outputs, environment=document.get("environment"),
        is_deterministic=bool(document.get("is_deterministic", True)),
    )


def _parse_inputs(section: Any, path: Path, problems: list[str]) -> dict[str, InputSpec]:
    specs: dict[str, InputSpec] = {}
    for name, spec in _mapping_items(section, path, "inputs", problems):
        if not isinstance(spec, dict) or "type" not in spec:
            problems.append(f"{where(path, section, name)}: input '{name}' needs a 'type' "
                            f"(one of {', '.join(INPUT_TYPES)})")
            continue
        check_fields(spec, INPUT_FIELDS, path, f"input '{name}'", problems)
        if spec["type"] not in INPUT_TYPES:
            problems.append(f"{where(path, spec, 'type')}: input '{name}' has unknown type '{spec['type']}'; "
                            f"use one of {', '.join(INPUT_TYPES)}")
            continue
        specs[name] = InputSpec(
            name=name, type=spec["type"], default=spec.get("default"), optional=bool(spec.get("optional")),
            enum=tuple(spec["enum"]) if spec.get("enum") else None, min=spec.get("min"), max=spec.get("max"))
        if spec.get("default") is not None:
            problem = type_problem(specs[name], spec["default"])
            if problem:
                problems.append(f"{where(path, spec, 'default')}: default of input '{name}' {problem}")
    return specs


def _parse_outputs(section: Any, path: Path, problems: list[str]) -> dict[str, OutputSpec]:
    specs: dict[str, OutputSpec] = {}
    for name, spec in _mapping_items(section, path, "outputs", problems):
        if not names.OUTPUT.matches(str(name)):
            problems.append(f"{where(path, section, name)}: output name {names.shown(name)} is invalid: an output "
                            f"name may contain only {names.OUTPUT.allowed} (Azure ML's rule); rename it")
            continue
        kind = spec.get("type", "uri_folder") if isinstance(spec, dict) else "uri_folder"
        check_fields(spec, OUTPUT_FIELDS, path, f"output '{name}'", problems)
        if kind not in OUTPUT_TYPES:
            problems.append(f"{where(path, spec, 'type')}: output '{name}' has unknown type '{kind}'; "
                            f"use one of {', '.join(OUTPUT_TYPES)}")
        specs[name] = OutputSpec(name=name, type=kind)
    return specs


def _names(section: Any) -> set[str]:
    return set(section) if isinstance(section, dict) else set()


def _mapping_items(section: Any, path: Path, what: str, problems: list[str]) -> list[tuple[str, Any]]:
    if not isinstance(section, dict):
        problems.append(f"{path}: '{what}' must be a mapping of name to definition")
        return []
    return list(section.items())


def _check_code(document: YamlMap, path: Path, problems: list[str]) -> Path | None:
    code = document.get("code")
    if code is None:
        return None
    code_path = resolved(path.parent / str(code))
    if not code_path.exists():
        problem = "is a symlink loop" if code_path.is_symlink() else "not found"
        problems.append(f"{where(path, document, 'code')}: code folder '{code}' {problem} "
                        f"(looked in {code_path}); fix the path, relative to the component file")
        return None
    return code_path


def _check_command(document: YamlMap, command: str, inputs: dict[str, InputSpec],
                   outputs: dict[str, OutputSpec], declared: set[str], code: Path | None, path: Path,
                   problems: list[str]) -> None:
    """References in the command; names whose declaration is itself broken were reported already."""
    at = where(path, document, "command")
    if command.count("$[[") != command.count("]]"):
        problems.append(f"{at}: unbalanced '$[[ ... ]]' optional group in the command; close each group")
        return
    grouped = set()
    for group in OPTIONAL_GROUP.findall(command):
        references = COMMAND_REFERENCE.findall(group)
        if not any(kind == "inputs" for kind, _ in references):
            problems.append(f"{at}: optional group '$[[{group.strip()}]]' references no input; "
                            "an optional group must contain an optional ${{inputs.x}}")
        grouped.update(name for kind, name in references if kind == "inputs")
    for kind, name in COMMAND_REFERENCE.findall(command):
        specs = inputs if kind == "inputs" else outputs
        if name not in specs and name not in declared:
            problems.append(f"{at}: the command uses ${{{{{kind}.{name}}}}} but the component declares no "
                            f"{kind[:-1]} '{name}'; declare it under '{kind}' or fix the name")
    for name, spec in inputs.items():
        if spec.optional and spec.default is None and name not in grouped and \
                re.search(r"\$\{\{\s*inputs\." + name + r"\s*\}\}", command):
            problems.append(f"{at}: optional input '{name}' is used outside an optional group; "
                            f"wrap it as $[[--{name} ${{{{inputs.{name}}}}}]]")
    if code is not None and code.is_dir():
        for script in SCRIPT_IN_COMMAND.findall(command):
            if not (code / script).is_file():
                problems.append(f"{at}: the command runs '{script}' but it is not in the code folder {code}; "
                                "fix the name or the 'code' path")


def _check_environment(document: YamlMap, path: Path, problems: list[str]) -> None:
    environment = document.get("environment")
    if isinstance(environment, dict) and environment.get("conda_file"):
        conda = resolved(path.parent / str(environment["conda_file"]))
        if not conda.is_file():
            problems.append(f"{where(path, environment, 'conda_file')}: conda file "
                            f"'{environment['conda_file']}' not found (looked in {conda}); fix the path")
