"""YAML loading that remembers where each mapping and key came from, for errors with line numbers.

A YAML file is bounded before it is built: its size, its nesting depth and its aliases (a few aliases of
aliases expand to billions of nodes: the "billion laughs"), each refused with a clear error.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from amlops.errors import PipelineValidationError

MAX_BYTES = 1 << 20  # pipeline and component files are a few KB; 1 MiB leaves plenty of room
MAX_DEPTH = 64  # Azure ML job files nest about 6 levels deep
MAX_ALIASES = 100
MAX_NODES = 100_000  # after expanding aliases


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
        if isinstance(key, (list, dict, set)):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be plain text, not a {'list' if isinstance(key, list) else 'mapping'}",
                key_node.start_mark)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path, what: str) -> YamlMap:
    """Load one YAML mapping; any problem becomes a one-line PipelineValidationError naming the file."""
    text = _read(path, what)
    try:
        _check_shape(text, path)
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 0
        raise PipelineValidationError(
            [f"{path}:{line}: invalid YAML: {error.problem or error.context}; fix the syntax there"]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as error:  # e.g. a date 2024-13-45
        raise PipelineValidationError([f"{path}: invalid YAML: {error}"]) from None
    if not isinstance(document, YamlMap):
        raise PipelineValidationError([f"{path}:1: expected a YAML mapping at the top of the {what} file"])
    return document


def _read(path: Path, what: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise PipelineValidationError([f"{path}: {what} file not found; check the path"]) from None
    if not stat.S_ISREG(mode):
        raise PipelineValidationError([f"{path}: the {what} file is not a regular file; give a YAML file"])
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise PipelineValidationError([f"{path}: cannot read the {what} file ({error.strerror})"]) from None
    if len(data) > MAX_BYTES:
        raise PipelineValidationError([f"{path}: the {what} file is larger than {MAX_BYTES // 1024} KiB; a "
                                       "pipeline or component YAML is a few KB, split it or remove generated content"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PipelineValidationError([f"{path}: invalid YAML: not UTF-8 text ({error.reason} at byte "
                                       f"{error.start})"]) from None


def _check_shape(text: str, path: Path) -> None:
    """Walk the parse events once: nesting depth, alias count and the node count with aliases expanded."""
    open_nodes: list[list] = []  # [expanded node count, anchor] per open mapping or sequence
    expanded: dict[str, int] = {}
    aliases = 0
    for event in yaml.parse(text, Loader=_LineLoader):
        line = event.start_mark.line + 1
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            open_nodes.append([1, event.anchor])
            if len(open_nodes) > MAX_DEPTH:
                raise PipelineValidationError([f"{path}:{line}: the YAML nests deeper than {MAX_DEPTH} levels; "
                                               "a pipeline file is a few levels deep, fix the brackets"])
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            size, anchor = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise PipelineValidationError([f"{path}:{line}: more than {MAX_ALIASES} YAML aliases (*name); "
                                               "write the values out instead"])
            size, anchor = expanded.get(event.anchor, 1), None
        else:
            continue
        if anchor:
            expanded[anchor] = size
        if open_nodes:
            open_nodes[-1][0] += size
            if open_nodes[-1][0] > MAX_NODES:
                raise PipelineValidationError([f"{path}:{line}: the YAML expands to more than {MAX_NODES} values "
                                               "through its aliases (*name); write the values out instead"])


def resolved(path: Path) -> Path:
    """`path` made absolute with symlinks resolved; where that fails (a symlink loop) it stays as written, for
    the existence and file-type checks to report."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


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
