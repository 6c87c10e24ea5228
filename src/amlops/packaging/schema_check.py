"""A small JSON-schema (draft-04) checker for the keywords task.schema.json uses, so `amlops package` needs no
jsonschema at run time. A schema using any other validation keyword is refused rather than half-checked.

`task.schema.json` next to this file is microsoft/azure-pipelines-task-lib `tasks.schema.json` @ a5e7ee0,
copied verbatim from ../shared/specs/azure-devops/.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from amlops.errors import AmlopsError

TASK_SCHEMA = Path(__file__).with_name("task.schema.json")
_ANNOTATIONS = {"$schema", "id", "title", "description", "default", "definitions", "examples", "$comment"}
_CHECKED = {"type", "properties", "additionalProperties", "required", "enum", "pattern", "items", "anyOf", "$ref"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=None)
def task_schema() -> dict:
    if not TASK_SCHEMA.is_file():
        raise AmlopsError(f"{TASK_SCHEMA} is missing from this amlops installation; install amlops from the "
                          "repository with `pip install -e .` to package the extension")
    return json.loads(TASK_SCHEMA.read_text(encoding="utf-8-sig"))


def problems(instance: Any, schema: dict | None = None) -> list[str]:
    """Every violation as `path: message` (path like `inputs[3].type`, `(root)` for the document)."""
    schema = task_schema() if schema is None else schema
    return [f"{path or '(root)'}: {message}" for path, message in _check(instance, schema, schema, "")]


def _check(value: Any, schema: dict, root: dict, path: str) -> Iterator[tuple[str, str]]:
    unknown = set(schema) - _ANNOTATIONS - _CHECKED
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {path or '(root)'} are not supported")
    if isinstance(schema.get("items"), list):
        raise ValueError(f"tuple 'items' at {path or '(root)'} is not supported")
    if "$ref" in schema:
        yield from _check(value, _resolve(root, schema["$ref"]), root, path)
        return
    if "type" in schema and not _type_ok(value, schema["type"]):
        yield path, f"{_show(value)} is not of type {_types(schema['type'])}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"{_show(value)} is not one of {', '.join(map(_show, schema['enum']))}"
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        yield path, f"{_show(value)} does not match {schema['pattern']}"
    if "anyOf" in schema and not any(not list(_check(value, s, root, path)) for s in schema["anyOf"]):
        yield path, f"{_show(value)} matches none of the allowed forms"
    if isinstance(value, dict):
        yield from _check_object(value, schema, root, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _check(item, schema["items"], root, f"{path}[{index}]")


def _check_object(value: dict, schema: dict, root: dict, path: str) -> Iterator[tuple[str, str]]:
    for name in schema.get("required", []):
        if name not in value:
            yield path, f"'{name}' is required"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = f"{path}.{name}" if path else name
        if name in properties:
            yield from _check(item, properties[name], root, where)
        elif extra is False:
            yield path, f"property '{name}' is not allowed"
        elif isinstance(extra, dict):
            yield from _check(item, extra, root, where)


def _resolve(root: dict, ref: str) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, got {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _type_ok(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    return any(_TYPES[name](value) for name in names)


def _types(expected: str | list[str]) -> str:
    return expected if isinstance(expected, str) else " or ".join(expected)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
