"""A small evaluator of Azure Pipelines condition expressions, for the functions the sample pipeline uses, so tests
can say which stages and steps run for given variables and dependency outputs.

Semantics from https://learn.microsoft.com/azure/devops/pipelines/process/expressions: `eq`/`ne` convert the right
operand to the left's type and compare strings ignoring case; a missing variable or output is null, which equals
only null or the empty string; `succeeded()` means every dependency succeeded (a skipped one did not).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.\-]*)"
                   r"|(?P<punct>[(),\[\]]))")


@dataclass
class Context:
    variables: dict[str, str] = field(default_factory=dict)
    # stage or job name -> {"result": "Succeeded"|"Skipped"|"Failed", "outputs": {"job.step.variable": value}}
    dependencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the status of what came before this stage, job or step
    previous: str = "Succeeded"


def evaluate(expression: str, context: Context) -> Any:
    parser = _Parser(_tokens(expression), context)
    value = parser.expression()
    if parser.position != len(parser.tokens):
        raise ValueError(f"unexpected {parser.tokens[parser.position]!r} in {expression!r}")
    return value


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"cannot read {expression[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _equal(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return _text(left) == _text(right)
    if isinstance(left, bool):
        return left == (_text(right).lower() == "true")
    return _text(left).lower() == _text(right).lower()


def _truthy(value: Any) -> bool:
    return bool(value) and value != "" and value is not None


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], context: Context):
        self.tokens, self.position, self.context = tokens, 0, context

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ValueError("unexpected end of expression")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, got {token[1]!r}")
        self.position += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def expression(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind != "name":
            raise ValueError(f"unexpected {text!r}")
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if self.peek() == "(":
            return self.call(text)
        return self.reference(text)

    def arguments(self) -> list[Any]:
        self.take("(")
        values = []
        while self.peek() != ")":
            values.append(self.expression())
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return values

    def call(self, name: str) -> Any:
        args = self.arguments()
        functions = {
            "and": lambda: all(_truthy(a) for a in args), "or": lambda: any(_truthy(a) for a in args),
            "not": lambda: not _truthy(args[0]), "eq": lambda: _equal(args[0], args[1]),
            "ne": lambda: not _equal(args[0], args[1]),
            "in": lambda: any(_equal(args[0], a) for a in args[1:]),
            "succeeded": lambda: self.context.previous == "Succeeded",
            "succeededorfailed": lambda: self.context.previous in ("Succeeded", "Failed"),
            "failed": lambda: self.context.previous == "Failed", "always": lambda: True,
        }
        if name.lower() not in functions:
            raise ValueError(f"function {name}() is not known to this evaluator")
        return functions[name.lower()]()

    def reference(self, name: str) -> Any:
        parts = name.split(".")
        while self.peek() == "[":
            self.take("[")
            parts.append(self.expression())
            self.take("]")
        root = parts[0].lower()
        if root == "variables":
            wanted = ".".join(str(p) for p in parts[1:]).lower()
            return next((v for k, v in self.context.variables.items() if k.lower() == wanted), None)
        if root == "dependencies" and len(parts) >= 3:
            dependency = self.context.dependencies.get(parts[1], {})
            if parts[2].lower() == "result":
                return dependency.get("result")
            if parts[2].lower() == "outputs" and len(parts) == 4:
                return dependency.get("outputs", {}).get(parts[3])
        raise ValueError(f"reference {'.'.join(map(str, parts))} is not known to this evaluator")
