"""YAML loading that remembers where each mapping and key came from, for errors with line numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from amlops.errors import PipelineValidationError


class YamlMap(dict):
    """A dict from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    mapping = YamlMap()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path, what: str) -> YamlMap:
    """Load one YAML mapping; any problem becomes a one-line PipelineValidationError naming the file."""
    if not path.is_file():
        raise PipelineValidationError([f"{path}: {what} file not found; check the path"])
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 0
        raise PipelineValidationError(
            [f"{path}:{line}: invalid YAML: {error.problem or error.context}; fix the syntax there"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise PipelineValidationError([f"{path}: invalid YAML: {error}"]) from None
    if not isinstance(document, YamlMap):
        raise PipelineValidationError([f"{path}:1: expected a YAML mapping at the top of the {what} file"])
    return document


def where(path: Path, mapping: Any, key: str | None = None) -> str:
    """`file:line` for a key of a mapping loaded by load_yaml (or just the file)."""
    if isinstance(mapping, YamlMap):
        return f"{path}:{mapping.line_of(key) if key else mapping.line}"
    return str(path)


def check_fields(mapping: Any, allowed: set[str], path: Path, what: str, problems: list[str]) -> None:
    """One problem per key of `mapping` that is not in `allowed`."""
    if not isinstance(mapping, dict):
        return
    for key in mapping:
        if key not in allowed:
            problems.append(f"{where(path, mapping, key)}: unknown field '{key}' in {what}; "
                            f"allowed: {', '.join(sorted(allowed))}")
