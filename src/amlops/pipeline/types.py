"""Checking and converting literal values against declared input types."""
from __future__ import annotations

from typing import Any

from amlops.pipeline.model import InputSpec


def type_problem(spec: InputSpec, value: Any) -> str | None:
    """Why `value` does not fit `spec`, as the end of a sentence; None when it fits."""
    if spec.is_asset:
        if not isinstance(value, str):
            return f"must be a path or URI for type {spec.type}, got {value!r}"
        return None
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
    }
    if not checks[spec.type](value):
        return f"must be of type {spec.type}, got {value!r}"
    if spec.enum and value not in spec.enum:
        return f"must be one of {', '.join(map(str, spec.enum))}, got {value!r}"
    if spec.min is not None and value < spec.min:
        return f"must be at least {spec.min}, got {value!r}"
    if spec.max is not None and value > spec.max:
        return f"must be at most {spec.max}, got {value!r}"
    return None


def coerce(text: str, kind: str | None) -> Any:
    """Convert an override given on the command line (`--set name=value`) to the declared type."""
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return lowered == "true"
    return text


def kind_of(value: Any) -> str:
    """The input type a YAML literal implies."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"
