"""Load an Azure ML v2 pipeline job YAML and its components, and validate it as a whole.

Everything wrong is collected and reported together, each as `file:line: what; how to fix`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from amlops import names
from amlops.errors import AmlopsError, PipelineValidationError
from amlops.pipeline.components import load_component, parse_component
from amlops.pipeline.inline_jobs import INLINE_FIELDS, inline_component, is_inline, job_binding, local_input_files
from amlops.pipeline.model import (
    ANY_EXPRESSION, ASSET_TYPES, INPUT_TYPES, OUTPUT_TYPES, Binding, Component, OutputSpec, Pipeline,
    PipelineInput, Step, pipeline_name,
)
from amlops.pipeline.types import coerce, kind_of, type_problem
from amlops.pipeline.yaml_source import YamlMap, check_fields, load_yaml, resolved, where
from amlops.workspace.local.snapshot import check_regular

PIPELINE_FIELDS = {
    "$schema", "type", "name", "display_name", "description", "experiment_name", "tags", "properties",
    "settings", "inputs", "outputs", "jobs", "compute", "identity",
}
STEP_FIELDS = {
    "type", "component", "inputs", "outputs", "compute", "display_name", "description", "name",
    "environment_variables", "resources", "distribution", "limits", "tags", "identity", "properties",
    "experiment_name", "settings",
} | INLINE_FIELDS
SETTINGS_FIELDS = {"default_compute", "default_datastore", "continue_on_step_failure", "force_rerun",
                   "default_environment"}
DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)$")


def load_pipeline(path: str | Path, overrides: dict[str, str] | None = None,
                  repository: Path | None = None) -> Pipeline:
    """Load and validate a pipeline job YAML file; raise PipelineValidationError listing every problem.

    Every file the YAML names (components, code, conda files, local inputs) must be inside `repository`
    (default: the git repository holding the pipeline file, or its folder outside git); a path given in
    `overrides` (`--set inputs.x=PATH`) is the user's explicit choice and may be anywhere."""
    path = resolved(Path(path))
    document = load_yaml(path, "pipeline")
    repository = (repository or repository_root(path)).resolve()
    problems: list[str] = []
    _check_top_level(document, path, problems)
    inputs = _parse_pipeline_inputs(document.get("inputs") or {}, path, problems)
    _apply_overrides(inputs, overrides or {}, path, problems)
    _check_local_paths(inputs, set(overrides or {}), document.get("inputs") or {}, repository, path, problems)
    outputs = _parse_pipeline_outputs(document.get("outputs") or {}, path, problems)
    steps, files = _parse_steps(document.get("jobs"), path, problems, inputs)
    _check_component_files(files, repository, path, problems)
    broken = set(document.get("jobs") or {}) - set(steps) if isinstance(document.get("jobs"), dict) else set()
    _check_bindings(document, steps, broken, inputs, outputs, path, problems)
    order = _topological_order(document, steps, path, problems)
    if problems:
        raise PipelineValidationError(problems)
    settings = document.get("settings") or {}
    return Pipeline(
        path=path, name=_default_name(document, path),
        display_name=str(document.get("display_name") or path.stem),
        experiment_name=str(document.get("experiment_name") or "default"),
        inputs=inputs, outputs=outputs, steps=steps, order=order,
        continue_on_step_failure=bool(settings.get("continue_on_step_failure", False)),
        files=tuple(sorted(files | {path} | _local_input_files(inputs))), repository=repository,
    )


def repository_root(pipeline_path: Path) -> Path:
    """The git work tree holding the pipeline file (the nearest folder with a .git), else the file's folder."""
    for folder in pipeline_path.parents:
        if (folder / ".git").exists():
            return folder
    return pipeline_path.parent


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`inputs.name=value` or `name=value` strings into a dict; a malformed one is a clear error."""
    overrides: dict[str, str] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        name = name.strip().removeprefix("inputs.")
        if not separator or not name:
            raise PipelineValidationError(
                [f"--set {assignment!r}: expected inputs.NAME=VALUE, e.g. --set inputs.learning_rate=0.05"])
        overrides[name] = value.strip()
    return overrides


def _default_name(document: YamlMap, path: Path) -> str:
    return pipeline_name(document.get("display_name") or document.get("name") or path.parent.name or path.stem)


def _check_top_level(document: YamlMap, path: Path, problems: list[str]) -> None:
    check_fields(document, PIPELINE_FIELDS, path, "the pipeline", problems)
    if document.get("type", "pipeline") != "pipeline":
        problems.append(f"{where(path, document, 'type')}: expected 'type: pipeline', "
                        f"got '{document.get('type')}'")
    settings = document.get("settings")
    if settings is not None and not isinstance(settings, dict):
        problems.append(f"{where(path, document, 'settings')}: 'settings' must be a mapping, e.g. "
                        "'settings: {default_compute: azureml:cpu-cluster}'")
    check_fields(settings, SETTINGS_FIELDS, path, "settings", problems)


def _parse_pipeline_inputs(section: Any, path: Path, problems: list[str]) -> dict[str, PipelineInput]:
    inputs: dict[str, PipelineInput] = {}
    if not isinstance(section, dict):
        problems.append(f"{path}: pipeline 'inputs' must be a mapping of name to value")
        return inputs
    for name, value in section.items():
        if not isinstance(value, dict):
            inputs[name] = PipelineInput(name=name, type=kind_of(value), value=value)
            continue
        kind = value.get("type", "string")
        if kind not in INPUT_TYPES:
            problems.append(f"{where(path, value, 'type')}: pipeline input '{name}' has unknown type '{kind}'; "
                            f"use one of {', '.join(INPUT_TYPES)}")
            continue
        if kind in ASSET_TYPES:
            raw = value.get("path")
            if raw is None:
                problems.append(f"{where(path, section, name)}: pipeline input '{name}' of type {kind} needs "
                                "a 'path' (a local path or azureml://datastores/<name>/paths/<path>)")
                continue
            inputs[name] = PipelineInput(name=name, type=kind, value=_resolve_path(str(raw), path), is_path=True)
        else:
            inputs[name] = PipelineInput(name=name, type=kind, value=value.get("value", value.get("default")))
    return inputs


def _resolve_path(raw: str, pipeline_path: Path) -> str:
    if "://" in raw or raw.startswith("azureml:"):
        return raw
    return str(resolved(pipeline_path.parent / raw))


def _check_local_paths(inputs: dict[str, PipelineInput], overridden: set[str], section: Any, repository: Path,
                       path: Path, problems: list[str]) -> None:
    """Local inputs exist, are regular files or folders (never a device such as /dev/zero, a fifo...) and, unless
    given explicitly with --set, are inside the pipeline's repository."""
    for name, spec in inputs.items():
        if not _is_local(spec):
            continue
        at = _input_at(section, name, path)
        if not Path(spec.value).exists() and not Path(spec.value).is_symlink():
            problems.append(f"{at}: pipeline input '{name}' points at {spec.value}, "
                            "which does not exist; fix the path or override it with --set")
            continue
        try:
            check_regular(Path(spec.value), f"pipeline input '{name}':")
        except AmlopsError as error:
            problems.append(f"{at}: {error}")
            continue
        if name not in overridden and not _within(Path(spec.value), repository):
            problems.append(f"{at}: pipeline input '{name}' points at {spec.value}, outside the pipeline's "
                            f"repository {repository}; move the data into the repository, upload it (`amlops "
                            f"datastore upload`) and use its azureml:// URI, or give the path for one run with "
                            f"--set inputs.{name}=PATH")


def _check_component_files(files: set[Path], repository: Path, path: Path, problems: list[str]) -> None:
    for file in sorted(files):
        if not _within(file, repository):
            problems.append(f"{path}: {file} (a component, its code or conda file, or a job's local input) is outside "
                            f"the pipeline's repository {repository}; keep every file of the pipeline inside the "
                            "repository")


def _within(file: Path, repository: Path) -> bool:
    try:
        return file.resolve().is_relative_to(repository)
    except (OSError, RuntimeError):
        return False


def _is_local(spec: PipelineInput) -> bool:
    return spec.is_path and "://" not in spec.value and not spec.value.startswith("azureml:")


def _input_at(section: Any, name: str, path: Path) -> str:
    entry = section.get(name) if isinstance(section, dict) else None
    return where(path, entry, "path") if isinstance(entry, dict) else where(path, section, name)


def _apply_overrides(inputs: dict[str, PipelineInput], overrides: dict[str, str], path: Path,
                     problems: list[str]) -> None:
    for name, text in overrides.items():
        current = inputs.get(name)
        if current is None:
            known = ", ".join(sorted(inputs)) or "none"
            problems.append(f"--set inputs.{name}: the pipeline {path} has no input '{name}' (inputs: {known})")
            continue
        if current.is_path:
            value = text if "://" in text or text.startswith("azureml:") else str(resolved(Path(text)))
            inputs[name] = PipelineInput(name=name, type=current.type, value=value, is_path=True)
            continue
        try:
            inputs[name] = PipelineInput(name=name, type=current.type, value=coerce(text, current.type))
        except ValueError:
            problems.append(f"--set inputs.{name}={text}: expected a value of type {current.type}")


def _parse_pipeline_outputs(section: Any, path: Path, problems: list[str]) -> dict[str, OutputSpec]:
    outputs: dict[str, OutputSpec] = {}
    if not isinstance(section, dict):
        problems.append(f"{path}: pipeline 'outputs' must be a mapping of name to definition")
        return outputs
    for name, value in section.items():
        kind = value.get("type", "uri_folder") if isinstance(value, dict) else "uri_folder"
        if kind not in OUTPUT_TYPES:
            problems.append(f"{where(path, value, 'type')}: pipeline output '{name}' has unknown type '{kind}'")
        outputs[name] = OutputSpec(name=name, type=kind)
    return outputs


def _parse_steps(jobs: Any, path: Path, problems: list[str],
                 pipeline_inputs: dict[str, PipelineInput]) -> tuple[dict[str, Step], set[Path]]:
    steps: dict[str, Step] = {}
    files: set[Path] = set()
    if not isinstance(jobs, dict) or not jobs:
        problems.append(f"{path}: the pipeline has no 'jobs'; add at least one step under 'jobs'")
        return steps, files
    for name, job in jobs.items():
        if not names.JOB.matches(str(name)):
            problems.append(f"{where(path, jobs, name)}: job name {names.shown(name)} is invalid: a job name may "
                            f"contain only {names.JOB.allowed} (Azure ML's rule); rename it, e.g. 'train'")
            continue
        if not isinstance(job, dict):
            problems.append(f"{where(path, jobs, name)}: job '{name}' must be a mapping with a 'component'")
            continue
        check_fields(job, STEP_FIELDS, path, f"job '{name}'", problems)
        bad = [key for key in ("inputs", "outputs") if not isinstance(job.get(key) or {}, dict)]
        for key in bad:
            problems.append(f"{where(path, job, key)}: '{key}' of job '{name}' must be a mapping of name to value")
        if bad:
            continue
        if is_inline(job):
            component = inline_component(name, job, path, pipeline_inputs, problems)
            files.update(_component_files(component) if component else set())
        else:
            component = _step_component(name, job, path, problems, files)
        if component is None:
            continue
        files.update(local_input_files(job, path))
        steps[name] = Step(
            name=name, component=component,
            inputs={k: job_binding(v, path) for k, v in (job.get("inputs") or {}).items()},
            outputs={k: Binding.parse(v) for k, v in (job.get("outputs") or {}).items()},
        )
    return steps, files


def _step_component(name: str, job: YamlMap, path: Path, problems: list[str],
                    files: set[Path]) -> Component | None:
    reference = job.get("component")
    at = where(path, job, "component")
    if reference is None:
        problems.append(f"{where(path, job)}: job '{name}' has no 'component' and no 'command'; point it at a "
                        "component YAML file, or write the command job inline (command, environment, inputs, "
                        "outputs)")
        return None
    if isinstance(reference, dict):
        return parse_component(reference, path, problems)
    reference = str(reference)
    if reference.startswith("azureml:"):
        problems.append(f"{at}: job '{name}' uses the registered component '{reference}', which only exists "
                        "in an Azure ML workspace; reference the component YAML file instead")
        return None
    component_path = resolved(path.parent / reference.removeprefix("file:"))
    if not component_path.is_file():
        problems.append(f"{at}: component file '{reference}' of job '{name}' not found "
                        f"(looked in {component_path}); fix the path, relative to the pipeline file")
        return None
    try:
        component = load_component(component_path, problems)
    except PipelineValidationError as error:
        problems.extend(error.problems)
        return None
    if component is not None:
        files.add(component_path)
        files.update(_component_files(component))
    return component


def _component_files(component: Component) -> set[Path]:
    files = {component.code} if component.code else set()
    environment = component.environment
    if isinstance(environment, dict) and environment.get("conda_file"):
        files.add(resolved(component.path.parent / str(environment["conda_file"])))
    return files


def _local_input_files(inputs: dict[str, PipelineInput]) -> set[Path]:
    return {Path(spec.value) for spec in inputs.values() if _is_local(spec)}


def _check_bindings(document: YamlMap, steps: dict[str, Step], broken: set[str],
                    inputs: dict[str, PipelineInput], outputs: dict[str, OutputSpec], path: Path,
                    problems: list[str]) -> None:
    """Check every reference; references to a job whose component is already reported broken are skipped,
    so one mistake gives one message."""
    jobs = document.get("jobs") or {}
    for name, step in steps.items():
        job = jobs[name]
        _check_step_inputs(name, step, job, steps, broken, inputs, path, problems)
        _check_step_outputs(name, step, job, outputs, path, problems)


def _check_step_inputs(name: str, step: Step, job: YamlMap, steps: dict[str, Step], broken: set[str],
                       inputs: dict[str, PipelineInput], path: Path, problems: list[str]) -> None:
    section = job.get("inputs") or {}
    declared = step.component.inputs
    for input_name, binding in step.inputs.items():
        at = where(path, section, input_name)
        spec = declared.get(input_name)
        if spec is None:
            problems.append(f"{at}: job '{name}' sets input '{input_name}', which component "
                            f"'{step.component.name}' does not declare (it has: {', '.join(declared) or 'none'})")
            continue
        if binding.parent_input is not None:
            source = inputs.get(binding.parent_input)
            if source is None:
                problems.append(f"{at}: ${{{{parent.inputs.{binding.parent_input}}}}} refers to a pipeline input "
                                "that does not exist; declare it under the pipeline's 'inputs'")
            elif spec.is_asset != source.is_path:
                problems.append(f"{at}: input '{input_name}' of job '{name}' is of type {spec.type} but "
                                f"pipeline input '{binding.parent_input}' is of type {source.type}")
            elif not spec.is_asset:
                _check_literal(at, name, input_name, spec, source.value, problems)
        elif binding.job in broken:
            continue
        elif binding.job is not None:
            _check_job_reference(at, name, binding, steps, problems)
        elif isinstance(binding.literal, str) and ANY_EXPRESSION.search(binding.literal):
            problems.append(f"{at}: '{binding.literal}' is not a valid reference; use "
                            "${{parent.inputs.NAME}} or ${{parent.jobs.STEP.outputs.NAME}}")
        else:
            _check_literal(at, name, input_name, spec, binding.literal, problems)
    for input_name, spec in declared.items():
        if spec.required and input_name not in step.inputs:
            problems.append(f"{where(path, job)}: job '{name}' does not set the required input '{input_name}' "
                            f"of component '{step.component.name}'; add it under the job's 'inputs'")


def _check_literal(at: str, job: str, input_name: str, spec, value: Any, problems: list[str]) -> None:
    problem = type_problem(spec, value)
    if problem:
        problems.append(f"{at}: input '{input_name}' of job '{job}' {problem}")


def _check_job_reference(at: str, name: str, binding: Binding, steps: dict[str, Step],
                         problems: list[str]) -> None:
    if binding.job not in steps:
        problems.append(f"{at}: ${{{{parent.jobs.{binding.job}.outputs.{binding.job_output}}}}} refers to a job "
                        f"'{binding.job}' that does not exist (jobs: {', '.join(steps)})")
    elif binding.job_output not in steps[binding.job].component.outputs:
        problems.append(f"{at}: job '{binding.job}' has no output '{binding.job_output}' (outputs: "
                        f"{', '.join(steps[binding.job].component.outputs) or 'none'})")
    elif binding.job == name:
        problems.append(f"{at}: job '{name}' consumes its own output; a step cannot depend on itself")


def _check_step_outputs(name: str, step: Step, job: YamlMap, outputs: dict[str, OutputSpec], path: Path,
                        problems: list[str]) -> None:
    section = job.get("outputs") or {}
    for output_name, binding in step.outputs.items():
        at = where(path, section, output_name)
        if output_name not in step.component.outputs:
            problems.append(f"{at}: job '{name}' binds output '{output_name}', which component "
                            f"'{step.component.name}' does not declare")
        elif binding.parent_output is not None and binding.parent_output not in outputs:
            problems.append(f"{at}: ${{{{parent.outputs.{binding.parent_output}}}}} refers to a pipeline output "
                            "that does not exist; declare it under the pipeline's 'outputs'")
        elif binding.parent_output is None and isinstance(binding.literal, str):
            problems.append(f"{at}: output '{output_name}' of job '{name}' must be bound to "
                            "${{parent.outputs.NAME}} or given as a mapping with 'type'")


def _topological_order(document: YamlMap, steps: dict[str, Step], path: Path,
                       problems: list[str]) -> tuple[str, ...]:
    """Kahn's algorithm, keeping the YAML order among ready steps; a leftover means a cycle."""
    remaining = {name: {u for u in step.upstream() if u in steps and u != name}
                 for name, step in steps.items()}
    order: list[str] = []
    while remaining:
        ready = [name for name, upstream in remaining.items() if not upstream]
        if not ready:
            cycle = " -> ".join(sorted(remaining))
            jobs = document.get("jobs") or {}
            first = sorted(remaining)[0]
            problems.append(f"{where(path, jobs, first)}: the jobs {cycle} depend on each other in a cycle; "
                            "remove one of the ${{parent.jobs...}} references")
            break
        for name in ready:
            order.append(name)
            del remaining[name]
        for upstream in remaining.values():
            upstream.difference_update(ready)
    return tuple(order)


def datastore_reference(value: str) -> tuple[str, str] | None:
    """(datastore, path) for an `azureml://datastores/<ds>/paths/<p>` URI, else None."""
    match = DATASTORE_URI.match(value)
    return (match.group("datastore"), match.group("path")) if match else None
