"""Command jobs written inline in the pipeline YAML, as azureml-examples and Azure/mlops-v2 write them:
`command`, `code`, `environment`, `inputs` and `outputs` on the job itself, no component file.

Azure ML turns such a job into an anonymous command component whose inputs and outputs are the job's own;
so do we. An input's type comes from what it is bound to: the pipeline input's type, `uri_folder` for
another job's output, the `type` of a `{type, path}` mapping, or the type the literal implies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from amlops.pipeline.components import NAME_PATTERN, _check_command, _check_environment
from amlops.pipeline.model import (
    INPUT_TYPES, OUTPUT_TYPES, Binding, Component, InputSpec, OutputSpec, PipelineInput,
)
from amlops.pipeline.types import kind_of
from amlops.pipeline.yaml_source import YamlMap, where

INLINE_FIELDS = {"command", "code", "environment", "services", "queue_settings", "parameters"}


def is_inline(job: Any) -> bool:
    return isinstance(job, dict) and "component" not in job and "command" in job


def inline_component(name: str, job: YamlMap, path: Path, pipeline_inputs: dict[str, PipelineInput],
                     problems: list[str]) -> Component | None:
    """The anonymous command component of an inline job; None (with problems appended) when unusable."""
    before = len(problems)
    if job.get("type", "command") != "command":
        problems.append(f"{where(path, job, 'type')}: job '{name}' has a 'command' but type '{job.get('type')}'; "
                        "inline jobs must be 'type: command'")
    if not job.get("environment"):
        problems.append(f"{where(path, job)}: job '{name}' has no 'environment'; Azure ML needs one for a command "
                        "job (e.g. azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest or image + conda_file)")
    inputs = {key: _input_spec(key, value, path, pipeline_inputs, problems)
              for key, value in (job.get("inputs") or {}).items()}
    outputs = {key: _output_spec(key, value, job.get("outputs"), path, problems)
               for key, value in (job.get("outputs") or {}).items()}
    code = _code_folder(name, job, path, problems)
    command = str(job.get("command") or "")
    declared = set(inputs) | set(outputs)
    _check_command(job, command, inputs, outputs, declared, code, path, problems)
    _check_environment(job, path, problems)
    if len(problems) > before:
        return None
    component_name = name.lower().replace("-", "_")
    if not NAME_PATTERN.match(component_name):
        component_name = f"job_{component_name}"
    return Component(path=path, name=component_name, version="1", command=command, code=code, inputs=inputs,
                     outputs=outputs, environment=job.get("environment"), inline=True)


def job_binding(value: Any, path: Path) -> Binding:
    """A job input's binding; a `{type, path}` mapping is its path (a local one resolved against the pipeline
    file), a `{value}` mapping its value."""
    if isinstance(value, dict) and "path" in value:
        raw = str(value["path"])
        local = "://" not in raw and not raw.startswith("azureml:")
        return Binding(literal=str((path.parent / raw).resolve()) if local else raw)
    if isinstance(value, dict) and "value" in value:
        return Binding(literal=value["value"])
    return Binding.parse(value)


def local_input_files(job: Any, path: Path) -> set[Path]:
    """The local files and folders a job's `{type, path}` inputs point at (they belong in the snapshot)."""
    files = set()
    for value in ((job.get("inputs") or {}).values() if isinstance(job, dict) else ()):
        binding = job_binding(value, path) if isinstance(value, dict) else None
        if binding is not None and isinstance(binding.literal, str) and Path(binding.literal).is_absolute() \
                and Path(binding.literal).exists():
            files.add(Path(binding.literal))
    return files


def _input_spec(key: str, value: Any, path: Path, pipeline_inputs: dict[str, PipelineInput],
                problems: list[str]) -> InputSpec:
    if isinstance(value, dict):
        kind = value.get("type") or ("uri_folder" if "path" in value else kind_of(value.get("value")))
        if kind not in INPUT_TYPES:
            problems.append(f"{where(path, value, 'type')}: input '{key}' has unknown type '{kind}'; "
                            f"use one of {', '.join(INPUT_TYPES)}")
        return InputSpec(name=key, type=kind, optional=bool(value.get("optional")))
    binding = Binding.parse(value)
    if binding.parent_input is not None:
        source = pipeline_inputs.get(binding.parent_input)
        return InputSpec(name=key, type=source.type if source else "string")
    if binding.job is not None:
        return InputSpec(name=key, type="uri_folder")
    return InputSpec(name=key, type=kind_of(value))


def _output_spec(key: str, value: Any, section: Any, path: Path, problems: list[str]) -> OutputSpec:
    kind = value.get("type", "uri_folder") if isinstance(value, dict) else "uri_folder"
    if kind not in OUTPUT_TYPES:
        problems.append(f"{where(path, section, key)}: output '{key}' has unknown type '{kind}'; "
                        f"use one of {', '.join(OUTPUT_TYPES)}")
    return OutputSpec(name=key, type=kind)


def _code_folder(name: str, job: YamlMap, path: Path, problems: list[str]) -> Path | None:
    code = job.get("code")
    if code is None:
        return None
    folder = (path.parent / str(code)).resolve()
    if not folder.is_dir():
        problems.append(f"{where(path, job, 'code')}: code folder '{code}' of job '{name}' not found (looked in "
                        f"{folder}); fix the path, relative to the pipeline file")
        return None
    return folder
