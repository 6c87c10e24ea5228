"""A small validator for the Azure REST specs (Swagger 2.0 with the Azure extensions), for the fakes.

The Azure ML specs compose definitions with `allOf`, put `additionalProperties: false` on every piece and
choose subtypes by discriminator (`jobType`, `componentType`, `datastoreType`, ...), so a plain JSON-schema
validator rejects even the official examples. Here a `$ref` is resolved across files, the subtype is picked
by the discriminator's value, the `allOf` pieces are merged, and only then are properties checked:
unknown properties, missing required ones, types, enums (case-insensitive, like the service), patterns,
`x-nullable`, and `readOnly` properties sent by a client.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DURATION = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@dataclass
class Operation:
    method: str
    template: str
    regex: re.Pattern
    spec: dict
    file: Path
    parameters: list[dict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.get("operationId", f"{self.method} {self.template}")

    def body_schema(self) -> tuple[dict, Path] | None:
        for parameter in self.parameters:
            if parameter.get("in") == "body":
                return parameter["schema"], parameter["_file"]
        return None


class Spec:
    """Every Swagger file of one api-version folder, with the files they reference."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.version = folder.name
        self.docs: dict[Path, dict] = {}
        self.operations: list[Operation] = []
        self._subtypes: dict[tuple[Path, str], dict[str, str]] = {}
        for path in sorted(folder.glob("*.json")):
            self._load(path.resolve())
        for path in sorted(folder.glob("*.json")):
            self._index_operations(path.resolve())
        for path in list(self.docs):
            self._index_subtypes(path)

    # loading

    def _load(self, path: Path) -> dict:
        if path not in self.docs:
            self.docs[path] = json.loads(path.read_text(encoding="utf-8-sig"))
        return self.docs[path]

    def resolve(self, ref: str, base: Path) -> tuple[dict, Path, str]:
        """A `$ref` -> (schema, the file it is in, its definition name)."""
        file_part, _, pointer = ref.partition("#")
        path = (base.parent / file_part).resolve() if file_part else base
        node: Any = self._load(path)
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, path, pointer.rsplit("/", 1)[-1]

    def _index_operations(self, path: Path) -> None:
        for template, item in (self.docs[path].get("paths") or {}).items():
            shared = item.get("parameters", [])
            for method, spec in item.items():
                if method == "parameters":
                    continue
                parameters = [self._parameter(p, path) for p in shared + spec.get("parameters", [])]
                self.operations.append(Operation(method.upper(), template, _template_regex(template), spec, path,
                                                 parameters))

    def _parameter(self, parameter: dict, path: Path) -> dict:
        if "$ref" in parameter:
            resolved, file, _ = self.resolve(parameter["$ref"], path)
            return {**resolved, "_file": file}
        return {**parameter, "_file": path}

    def _index_subtypes(self, path: Path) -> None:
        for name, definition in (self.docs[path].get("definitions") or {}).items():
            value = definition.get("x-ms-discriminator-value", name)
            for ancestor in self._ancestors(definition, path):
                self._subtypes.setdefault(ancestor, {})[value.lower()] = f"{path}#{name}"

    def _ancestors(self, definition: dict, path: Path, seen: int = 0) -> list[tuple[Path, str]]:
        found = []
        for piece in definition.get("allOf", []):
            if "$ref" in piece and seen < 20:
                parent, parent_path, parent_name = self.resolve(piece["$ref"], path)
                found.append((parent_path, parent_name))
                found += self._ancestors(parent, parent_path, seen + 1)
        return found

    # routing

    def operation(self, method: str, path: str) -> Operation | None:
        path = unquote(path)
        matches = [op for op in self.operations if op.method == method and op.regex.match(path)]
        # the most specific template wins (fewest parameters)
        return min(matches, key=lambda op: op.template.count("{"), default=None)

    # validation

    def validate_request(self, method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {path}: no operation in the {self.version} spec"]
        problems = self._check_parameters(operation, path, query)
        schema = operation.body_schema()
        if schema is not None and body is not None:
            problems += self.validate(schema[0], body, schema[1], "body", request=True)
        elif schema is not None and any(p.get("in") == "body" and p.get("required") for p in operation.parameters):
            problems.append(f"{operation.id}: the body is required")
        return [f"{operation.id} ({self.version}): {p}" for p in problems]

    def validate_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        operation = self.operation(method, path)
        if operation is None or body is None:
            return []
        responses = operation.spec.get("responses", {})
        answer = responses.get(str(status)) or (responses.get("default") if status >= 400 else None)
        if answer is None:
            return [f"{operation.id} ({self.version}): status {status} is not a documented answer"]
        if "schema" not in answer:
            return []
        problems = self.validate(answer["schema"], body, operation.file, "response", request=False)
        return [f"{operation.id} ({self.version}) answer {status}: {p}" for p in problems]

    def _check_parameters(self, operation: Operation, path: str, query: dict[str, str]) -> list[str]:
        problems = []
        values = operation.regex.match(unquote(path)).groupdict()
        for parameter in operation.parameters:
            name, where = parameter.get("name"), parameter.get("in")
            value = values.get(name) if where == "path" else query.get(name) if where == "query" else None
            if value is None:
                if parameter.get("required") and where in ("path", "query"):
                    problems.append(f"the {where} parameter '{name}' is missing")
                continue
            pattern = parameter.get("pattern")
            if pattern and not re.search(pattern, value):
                problems.append(f"the {where} parameter {name}={value!r} does not match {pattern}")
        return problems

    def validate(self, schema: dict, value: Any, file: Path, where: str, request: bool = True,
                 depth: int = 0) -> list[str]:
        if depth > 60:
            return []
        name = None
        if "$ref" in schema:
            schema, file, name = self.resolve(schema["$ref"], file)
        if value is None:
            return [] if schema.get("x-nullable", True) else [f"{where} is null, which is not allowed"]
        if name is not None and isinstance(value, dict):
            chosen = self._subtype(schema, file, name, value, where)
            if isinstance(chosen, str):
                return [chosen]
            schema, file = chosen
        merged = self._merge(schema, file)
        return self._check(merged, value, where, request, depth)

    def _subtype(self, schema: dict, file: Path, name: str, value: dict, where: str) -> tuple[dict, Path] | str:
        """The definition the discriminator's value picks (`jobType: Pipeline` -> PipelineJob)."""
        discriminator = self._discriminator(schema, file)
        if discriminator is None or value.get(discriminator) is None:
            return schema, file
        chosen = str(value[discriminator]).lower()
        if chosen == str(schema.get("x-ms-discriminator-value", name)).lower():
            return schema, file
        target = self._subtypes.get((file, name), {}).get(chosen)
        if target is None:
            return f"{where}.{discriminator}: unknown value {value[discriminator]!r} for {name}"
        target_file, _, target_name = target.partition("#")
        return self.docs[Path(target_file)]["definitions"][target_name], Path(target_file)

    def _discriminator(self, schema: dict, file: Path) -> str | None:
        if schema.get("discriminator"):
            return schema["discriminator"]
        for piece in schema.get("allOf", []):
            if "$ref" in piece:
                parent, parent_file, _ = self.resolve(piece["$ref"], file)
                found = self._discriminator(parent, parent_file)
                if found:
                    return found
        return None

    def _merge(self, schema: dict, file: Path) -> dict:
        """The schema with its allOf pieces merged in; property schemas keep the file they came from."""
        merged: dict = {key: value for key, value in schema.items() if key not in ("allOf", "properties")}
        merged["properties"] = {}
        merged["required"] = list(schema.get("required", []))
        for piece in schema.get("allOf", []):
            piece_file = file
            if "$ref" in piece:
                piece, piece_file, _ = self.resolve(piece["$ref"], file)
            inner = self._merge(piece, piece_file)
            merged["properties"].update(inner["properties"])
            merged["required"] += inner["required"]
            merged.setdefault("type", inner.get("type"))
        merged["properties"].update({key: (value, file) for key, value in schema.get("properties", {}).items()})
        merged["_file"] = file
        return merged

    def _check(self, schema: dict, value: Any, where: str, request: bool, depth: int) -> list[str]:
        kind = schema.get("type") or ("object" if schema["properties"] else None)
        problem = _type_problem(kind, value, where)
        if problem:
            return [problem]
        problems = _scalar_problems(schema, value, where)
        if kind == "array":
            items = schema.get("items", {})
            for index, item in enumerate(value):
                problems += self.validate(items, item, schema["_file"], f"{where}[{index}]", request, depth + 1)
        if isinstance(value, dict):
            problems += self._check_object(schema, value, where, request, depth)
        return problems

    def _check_object(self, schema: dict, value: dict, where: str, request: bool, depth: int) -> list[str]:
        problems = [f"{where}.{name} is required" for name in schema["required"] if name not in value]
        properties = schema["properties"]
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                sub, sub_file = properties[key]
                if request and sub.get("readOnly"):
                    problems.append(f"{where}.{key} is read-only; a client must not send it")
                    continue
                problems += self.validate(sub, item, sub_file, f"{where}.{key}", request, depth + 1)
            elif isinstance(extra, dict):
                problems += self.validate(extra, item, schema["_file"], f"{where}.{key}", request, depth + 1)
            elif properties or extra is False:
                problems.append(f"{where}.{key} is not a property of this type "
                                f"(known: {', '.join(sorted(properties)) or 'none'})")
        return problems


def _template_regex(template: str) -> re.Pattern:
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$", re.IGNORECASE)


def _type_problem(kind: str | None, value: Any, where: str) -> str | None:
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    if kind in checks and not checks[kind](value):
        return f"{where} must be of type {kind}, got {type(value).__name__} {json.dumps(value)[:80]}"
    return None


def _scalar_problems(schema: dict, value: Any, where: str) -> list[str]:
    problems = []
    if "enum" in schema and isinstance(value, str):
        if value.lower() not in {str(option).lower() for option in schema["enum"]}:
            problems.append(f"{where}={value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        pattern, fmt = schema.get("pattern"), schema.get("format")
        if pattern and not re.search(pattern, value):
            problems.append(f"{where}={value!r} does not match {pattern}")
        if fmt == "date-time" and not _is_datetime(value):
            problems.append(f"{where}={value!r} is not an ISO 8601 date-time")
        if fmt == "duration" and not DURATION.match(value):
            problems.append(f"{where}={value!r} is not an ISO 8601 duration")
        if fmt == "uuid" and not UUID.match(value):
            problems.append(f"{where}={value!r} is not a UUID")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where} is shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}={value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}={value} is above the maximum {schema['maximum']}")
    return problems


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return bool(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", text))
    return True
