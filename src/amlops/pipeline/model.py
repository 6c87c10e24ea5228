"""The pipeline model: what a validated Azure ML v2 pipeline job and its command components contain."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRIMITIVE_TYPES = ("string", "integer", "number", "boolean")
ASSET_TYPES = ("uri_file", "uri_folder", "mltable", "mlflow_model", "custom_model", "triton_model")
INPUT_TYPES = PRIMITIVE_TYPES + ASSET_TYPES
OUTPUT_TYPES = ASSET_TYPES

PARENT_INPUT = re.compile(r"^\$\{\{\s*parent\.inputs\.([A-Za-z_][\w]*)\s*\}\}$")
PARENT_OUTPUT = re.compile(r"^\$\{\{\s*parent\.outputs\.([A-Za-z_][\w]*)\s*\}\}$")
JOB_OUTPUT = re.compile(r"^\$\{\{\s*parent\.jobs\.([A-Za-z_][\w-]*)\.outputs\.([A-Za-z_][\w]*)\s*\}\}$")
ANY_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")
COMMAND_REFERENCE = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_][\w]*)\s*\}\}")
OPTIONAL_GROUP = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)


def pipeline_name(text: str) -> str:
    """The name a pipeline has on both backends: Azure ML's form for component names, lowercase letters, digits
    and underscores starting with a letter (azure-ai-ml's ComponentNameStr: `^[a-z][a-z0-9_]*$`), so the local
    workspace and Azure ML call it the same: `safe-driver-training` -> `safe_driver_training`. Lookups accept
    either spelling."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(text).strip().lower()).strip("_")
    return name if name[:1].isalpha() else f"p_{name}".rstrip("_")


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    default: Any = None
    optional: bool = False
    enum: tuple | None = None
    min: float | None = None
    max: float | None = None

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    @property
    def is_asset(self) -> bool:
        return self.type in ASSET_TYPES


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str


@dataclass(frozen=True)
class Component:
    path: Path
    name: str
    version: str
    command: str
    code: Path | None
    inputs: dict[str, InputSpec]
    outputs: dict[str, OutputSpec]
    environment: Any = None
    is_deterministic: bool = True
    inline: bool = False  # an inline command job's anonymous component (path is then the pipeline file)


@dataclass(frozen=True)
class Binding:
    """One value given to a step input or output: a literal, or a reference to a pipeline input/output
    or to another step's output."""

    literal: Any = None
    parent_input: str | None = None
    parent_output: str | None = None
    job: str | None = None
    job_output: str | None = None

    @staticmethod
    def parse(value: Any) -> "Binding":
        if isinstance(value, str):
            for pattern, build in (
                (PARENT_INPUT, lambda m: Binding(parent_input=m.group(1))),
                (PARENT_OUTPUT, lambda m: Binding(parent_output=m.group(1))),
                (JOB_OUTPUT, lambda m: Binding(job=m.group(1), job_output=m.group(2))),
            ):
                match = pattern.match(value.strip())
                if match:
                    return build(match)
        return Binding(literal=value)


@dataclass(frozen=True)
class PipelineInput:
    name: str
    type: str
    value: Any
    is_path: bool = False


@dataclass(frozen=True)
class Step:
    name: str
    component: Component
    inputs: dict[str, Binding]
    outputs: dict[str, Binding]

    def upstream(self) -> set[str]:
        return {binding.job for binding in self.inputs.values() if binding.job}


@dataclass(frozen=True)
class Pipeline:
    path: Path
    name: str
    display_name: str
    experiment_name: str
    inputs: dict[str, PipelineInput]
    outputs: dict[str, OutputSpec]
    steps: dict[str, Step]
    order: tuple[str, ...]
    continue_on_step_failure: bool = False
    files: tuple[Path, ...] = field(default=())
    repository: Path | None = None  # every file of `files` is inside it
