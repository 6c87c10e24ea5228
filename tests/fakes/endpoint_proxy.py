"""What Azure DevOps does with a task's `dataSourceBindings` entry when the task editor fills a pick list (the
service endpoint proxy), for the part of it amlops' task.json files use; the requests go over real HTTP.

The service's own code is not public; what is modelled comes from Microsoft's documentation and tasks:
* the binding's fields and the result's shape (a list of `resultTemplate` renderings of what `resultSelector`
  picks): https://github.com/microsoft/azure-pipelines-extensions/blob/master/docs/authoring/endpoints/dataSources.md;
* paging: `initialContextTemplate` gives the first call's variables, after each call `callbackRequiredTemplate`
  says whether to call again and `callbackContextTemplate` gives the next call's variables, both rendered
  against the previous answer; "a hard limit on the number of calls we will make to the service ... 5"
  (docs/authoring/endpoints/pagination.md, "Throttling", same repository);
* the templates are mustache/handlebars (docs/authoring/endpoints/mustacheHelpers.md); `response.*` and the
  helpers `isTokenPresent`, `getTokenValue` and `extractUrlQueryParameter` as microsoft/azure-pipelines-tasks
  uses them in its ARM bindings (BicepDeployV0, AzureResourceManagerTemplateDeploymentV3, HelmDeployV1,
  AzureAppServiceSettingsV1 task.json): `{{#getTokenValue response.nextLink}}{{extractUrlQueryParameter
  %24skiptoken}}{{/getTokenValue}}` reads the `$skiptoken` query parameter of the answer's nextLink. Read from
  those files, not run against the service: extractUrlQueryParameter is taken to return the value as it stands
  in the URL (still percent-encoded), which is what lets those tasks put it back into a URL unchanged.

Strict where the service would be lenient only in ways that hide mistakes: a helper or block it does not
model raises TemplateError, and so does a `$(input)` without a value (the editor does not call before the
inputs a binding depends on are set). An unknown variable renders as nothing, as in handlebars.
"""
from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_CALLS = 5  # pagination.md, "Throttling"
# pagination.md: the page size "should be chosen such that the response of one call does not exceed 2MB"
MAX_ANSWER_BYTES = 2 * 1024 * 1024
TAG = re.compile(r"\{\{\{\s*(.*?)\s*\}\}\}|\{\{\s*(.*?)\s*\}\}", re.S)
MACRO = re.compile(r"\$\((\w+)\)")


class TemplateError(Exception):
    pass


class EndpointError(Exception):
    """The service's answer to a call that failed: the picker shows it instead of a list."""


class _Undefined:
    """A path that resolves to nothing; a helper may still read the text it was written as (Handlebars.Net)."""

    def __init__(self, text: str):
        self.text = text


@dataclass
class PickList:
    values: list[dict[str, str]] = field(default_factory=list)  # {"Value": ..., "DisplayValue": ...}
    urls: list[str] = field(default_factory=list)  # every call made, in order

    @property
    def names(self) -> list[str]:
        return [value["Value"] for value in self.values]


def evaluate(binding: dict, *, endpoint: dict[str, str], inputs: dict[str, str], token: str,
             timeout_s: float = 10.0) -> PickList:
    """The pick list a binding gives for these inputs, calling its endpointUrl as many times as its callback
    templates ask for (at most MAX_CALLS)."""
    if "endpointUrl" not in binding:
        raise TemplateError(f"{binding['target']}: a built-in data source ({binding.get('dataSourceName')}) "
                            "is the service's own, not modelled here")
    parameters = {name: expand(value, inputs) for name, value in (binding.get("parameters") or {}).items()}
    context = _json(render(binding["initialContextTemplate"], {}), "initialContextTemplate") \
        if binding.get("initialContextTemplate") else {}
    result = PickList()
    for _ in range(MAX_CALLS):
        url = render(expand(binding["endpointUrl"], inputs), {"endpoint": endpoint, **parameters, **context})
        result.urls.append(url)
        answer, headers = _get(url, token, timeout_s)
        result.values += [_item(binding, selected) for selected in select(binding.get("resultSelector"), answer)]
        state = {"response": answer, "headers": headers}
        required = binding.get("callbackRequiredTemplate")
        if not required or render(required, state).strip().lower() != "true":
            break
        context = _json(render(binding["callbackContextTemplate"], state), "callbackContextTemplate")
    return result


def expand(text: str, inputs: dict[str, str]) -> str:
    """`$(name)` -> the value of the task input `name`."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if not inputs.get(name):
            raise TemplateError(f"$({name}) has no value: the editor lists nothing before that input is set")
        return inputs[name]
    return MACRO.sub(value, text)


def select(selector: str | None, answer: Any) -> list[Any]:
    if not selector:
        return [answer]
    kind, _, expression = selector.partition(":")
    if kind != "jsonpath":
        raise TemplateError(f"resultSelector {selector!r}: only jsonpath: selectors are modelled")
    from jsonpath_ng.ext import parse

    return [match.value for match in parse(expression).find(answer)]


def _item(binding: dict, selected: Any) -> dict[str, str]:
    template = binding.get("resultTemplate")
    if template is None:
        if not isinstance(selected, str):
            raise TemplateError(f"{binding['target']}: without a resultTemplate the selector must pick strings")
        return {"Value": selected, "DisplayValue": selected}
    item = _json(render(template, selected), "resultTemplate")
    if set(item) != {"Value", "DisplayValue"}:
        raise TemplateError(f"resultTemplate gave {item}, not Value and DisplayValue")
    return item


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise TemplateError(f"{what} rendered to {text!r}, which is not JSON") from None


def _get(url: str, token: str, timeout_s: float) -> tuple[Any, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the environment
    try:
        with opener.open(request, timeout=timeout_s) as response:
            data = response.read(MAX_ANSWER_BYTES + 1)
            headers = {name.lower(): value for name, value in response.headers.items()}
    except urllib.error.HTTPError as error:
        raise EndpointError(f"Failed to query service endpoint api: {url}. Status Code: {error.code}, "
                            f"{error.read(4096).decode(errors='replace')}") from None
    if len(data) > MAX_ANSWER_BYTES:
        raise EndpointError(f"{url}: the answer is over {MAX_ANSWER_BYTES} bytes")
    return json.loads(data), headers


# --- templates ------------------------------------------------------------------------------------------------


def render(template: str, context: Any) -> str:
    nodes, rest = _parse(list(_tokens(template)), None)
    if rest:
        raise TemplateError(f"{template!r}: {{{{/{rest[0][1]}}}}} closes no block")
    return _render(nodes, context)


def _tokens(template: str):
    """("text", str) | ("raw", expr) | ("open", expr) | ("close", name) | ("else", "") | ("escaped", expr)"""
    position = 0
    for match in TAG.finditer(template):
        if match.start() > position:
            yield "text", template[position:match.start()]
        position = match.end()
        if match.group(1) is not None:
            yield "raw", match.group(1)
            continue
        body = match.group(2)
        if body.startswith("#"):
            yield "open", body[1:].strip()
        elif body.startswith("/"):
            yield "close", body[1:].strip()
        elif body == "else":
            yield "else", ""
        else:
            yield "escaped", body
    if position < len(template):
        yield "text", template[position:]


def _parse(tokens: list, closing: str | None) -> tuple[list, list]:
    """Nodes up to the `{{/closing}}` tag (consumed) -> (nodes, the tokens after it)."""
    nodes: list = []
    while tokens:
        kind, value = tokens.pop(0)
        if kind == "close":
            if value != closing:
                raise TemplateError(f"{{{{/{value}}}}} closes {closing or 'nothing'}")
            return nodes, tokens
        if kind == "else":
            raise TemplateError("{{else}} is not modelled (no binding of amlops uses it)")
        if kind == "open":
            name = value.split()[0]
            children, tokens = _parse(tokens, name)
            nodes.append(("block", value, children))
        else:
            nodes.append((kind, value))
    if closing is not None:
        raise TemplateError(f"{{{{#{closing}}}}} is never closed")
    return nodes, []


def _render(nodes: list, context: Any) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "block":
            out.append(_block(node[1], node[2], context))
        else:
            text = _text(_expression(node[1], context))
            out.append(text if node[0] == "raw" else html.escape(text, quote=True).replace("&#x27;", "'"))
    return "".join(out)


def _expression(expression: str, context: Any) -> Any:
    head, *arguments = expression.split()
    if head in HELPERS:
        return HELPERS[head](context, *[_lookup(argument, context) for argument in arguments])
    if arguments:
        raise TemplateError(f"{{{{{expression}}}}}: helper {head!r} is not modelled")
    return _lookup(head, context)


def _block(expression: str, children: list, context: Any) -> str:
    head, *arguments = expression.split()
    if head not in BLOCK_HELPERS:
        raise TemplateError(f"{{{{#{expression}}}}}: block helper {head!r} is not modelled")
    return BLOCK_HELPERS[head](children, context, *[_lookup(argument, context) for argument in arguments])


def _lookup(path: str, context: Any) -> Any:
    if path == "this":
        return context
    value = context
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _Undefined(path)
        value = value[part]
    return value


def _text(value: Any) -> str:
    if value is None or isinstance(value, _Undefined):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _present(value: Any) -> bool:
    return value is not None and not isinstance(value, _Undefined) and value != ""


def _is_token_present(context: Any, value: Any) -> str:
    return "true" if _present(value) else "false"


def _extract_url_query_parameter(context: Any, name: Any) -> str:
    """The value of query parameter `name` (written URL-encoded: %24skip for $skip) of the URL in context."""
    wanted = unquote(name.text if isinstance(name, _Undefined) else str(name))
    if not isinstance(context, str):
        return ""
    for pair in urlsplit(context).query.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key) == wanted:
            return value
    return ""


def _get_token_value(children: list, context: Any, value: Any) -> str:
    return _render(children, value) if _present(value) else ""


HELPERS = {"isTokenPresent": _is_token_present, "extractUrlQueryParameter": _extract_url_query_parameter}
BLOCK_HELPERS = {"getTokenValue": _get_token_value}
