"""Helpers of iac-pipeline.yml (standard library only; any Python >= 3.10 on the agent runs them).

    python environment_setup/iac_tool.py check-parameters environment_setup/azuredeploy.parameters.json
        Checks a parameters file against azuredeploy.json (names, types, lengths, ranges, allowed
        values and the baseName pattern) and fails with a readable message before the deployment
        starts, instead of Azure rejecting one derived resource name halfway through it.

    ARM_OUTPUTS='<json>' python environment_setup/iac_tool.py export-outputs
        Turns the deployment outputs that AzureResourceManagerTemplateDeployment@3 stores as JSON
        in its `deploymentOutputs` variable into pipeline variables (WORKSPACE_NAME,
        STORAGE_ACCOUNT_NAME, ...) with `##vso[task.setvariable]`, and uploads a run summary.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

TEMPLATE = Path(__file__).resolve().parent / "azuredeploy.json"

# template output -> pipeline variable read by the later steps of iac-pipeline.yml and by the sample pipeline
OUTPUT_VARIABLES: dict[str, str] = {
    "workspaceName": "WORKSPACE_NAME",
    "storageAccountName": "STORAGE_ACCOUNT_NAME",
    "containerName": "CONTAINER_NAME",
    "computeName": "COMPUTE_NAME",
    "keyVaultName": "KEY_VAULT_NAME",
    "containerRegistryName": "CONTAINER_REGISTRY_NAME",
    "resourceGroupName": "RESOURCE_GROUP",
    "subscriptionId": "SUBSCRIPTION_ID",
}

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "securestring": (str,), "int": (int,), "bool": (bool,),
    "object": (dict,), "secureobject": (dict,), "array": (list,),
}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def parameter_problems(values: dict[str, Any], template: Path = TEMPLATE) -> list[str]:
    """What is wrong with these parameter values for the template (empty when nothing)."""
    declared: dict[str, dict[str, Any]] = _load(template)["parameters"]
    problems = [f"unknown parameter '{name}'" for name in values if name not in declared]
    for name, spec in declared.items():
        if name not in values:
            if "defaultValue" not in spec:
                problems.append(f"parameter '{name}' is required")
            continue
        value = values[name]
        kind = spec["type"].lower()
        # bool is an int in Python: keep ints and bools apart
        if not isinstance(value, _TYPES[kind]) or (kind == "int" and isinstance(value, bool)):
            problems.append(f"parameter '{name}' must be of type {spec['type']}, got {value!r}")
            continue
        if "allowedValues" in spec and value not in spec["allowedValues"]:
            problems.append(f"parameter '{name}' must be one of {spec['allowedValues']}, got {value!r}")
        if isinstance(value, (str, list)):
            low, high = spec.get("minLength", 0), spec.get("maxLength", sys.maxsize)
            if not low <= len(value) <= high:
                problems.append(f"parameter '{name}' has length {len(value)}; allowed {low} to {high}")
        if kind == "int":
            low, high = spec.get("minValue", -sys.maxsize), spec.get("maxValue", sys.maxsize)
            if not low <= value <= high:
                problems.append(f"parameter '{name}' is {value}; allowed {low} to {high}")
        pattern = spec.get("metadata", {}).get("namePattern")
        if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
            problems.append(f"parameter '{name}' is '{value}': use lowercase letters, digits and single "
                            f"hyphens, start with a letter, end with a letter or digit ({pattern})")
    return problems


def check_parameters_file(path: Path, template: Path = TEMPLATE) -> list[str]:
    """parameter_problems() for a deploymentParameters file (`{"parameters": {"x": {"value": ...}}}`)."""
    entries: dict[str, dict[str, Any]] = _load(path)["parameters"]
    return parameter_problems({name: entry.get("value") for name, entry in entries.items()}, template)


def _escape(value: str) -> str:
    """Escape a logging-command value the way the agent expects."""
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def export_outputs(raw: str, out: TextIO, summary_dir: str | None = None) -> dict[str, str]:
    """Print one `task.setvariable` command per known output; return variable -> value."""
    try:
        outputs: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SystemExit(f"ARM_OUTPUTS is not JSON ({error}); does the deploy step set deploymentOutputs?")
    # ARM keeps the template's spelling of output names; match case-insensitively all the same.
    by_lower = {key.lower(): value for key, value in outputs.items()}
    exported: dict[str, str] = {}
    for output, variable in OUTPUT_VARIABLES.items():
        entry = by_lower.get(output.lower())
        if not isinstance(entry, dict) or "value" not in entry:
            raise SystemExit(f"deployment output '{output}' is missing: was environment_setup/"
                             "azuredeploy.json the template deployed?")
        exported[variable] = str(entry["value"])
        out.write(f"##vso[task.setvariable variable={variable}]{_escape(exported[variable])}\n")
    if summary_dir:
        summary = Path(summary_dir) / "amlops-infrastructure.md"
        rows = "".join(f"| `{name}` | `{value}` |\n" for name, value in exported.items())
        summary.write_text("## Azure resources of amlops\n\nThe sample pipeline reads these variables:\n\n"
                           "| variable | value |\n|---|---|\n" + rows, encoding="utf-8")
        out.write(f"##vso[task.uploadsummary]{summary}\n")
    return exported


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "check-parameters":
        problems = check_parameters_file(Path(argv[1]))
        for problem in problems:
            print(f"##vso[task.logissue type=error]{_escape(problem)}")
        if not problems:
            print(f"{argv[1]} fits {TEMPLATE.name}")
        return 1 if problems else 0
    if len(argv) == 1 and argv[0] == "export-outputs":
        export_outputs(os.environ.get("ARM_OUTPUTS", ""), sys.stdout, os.environ.get("AGENT_TEMPDIRECTORY"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
