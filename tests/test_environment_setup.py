"""Offline checks of environment_setup/: the ARM template, its example parameters and iac-pipeline.yml.

Nothing here talks to Azure. The template is checked three ways:
- syntax, against the official schemas in the reference specs' azure/arm-template-schemas (the top-level
  deploymentTemplate schema, then each resource against its own resource schema);
- meaning, by evaluating its expressions with a small evaluator of the ARM functions it uses, for a
  whole range of allowed base names, so that derived names, references, dependsOn and outputs are
  checked as Azure would compute them;
- re-runs: each property that made microsoft/MLOpsPython's templates fail on a second deployment is
  pinned by one test whose comment names the failure it prevents.
"""
from __future__ import annotations

import copy
import importlib.util
import io
import json
import re
import shlex
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7

from support import SPECS

ROOT = Path(__file__).resolve().parents[1]
ARM_SCHEMAS = SPECS / "azure" / "arm-template-schemas"
PIPELINES_SCHEMA = SPECS / "azure-devops" / "pipelines-yaml.schema.json"
SETUP = ROOT / "environment_setup"
TEMPLATE_PATH = SETUP / "azuredeploy.json"
PARAMETERS_PATH = SETUP / "azuredeploy.parameters.json"
PIPELINE_PATH = SETUP / "iac-pipeline.yml"

SCHEMA_BASE = "https://schema.management.azure.com/schemas/"
TEMPLATE_SCHEMA_ID = SCHEMA_BASE + "2019-04-01/deploymentTemplate.json"
PARAMETERS_SCHEMA_ID = SCHEMA_BASE + "2019-04-01/deploymentParameters.json"

# Resource types whose schema is not in the reference specs: they are checked against the generic
# resourceBase of deploymentTemplate.json only, plus the hand-written tests below.
TYPES_WITHOUT_LOCAL_SCHEMA = {
    "Microsoft.OperationalInsights/workspaces",  # no Microsoft.OperationalInsights schema copied
    "Microsoft.Authorization/roleAssignments",  # no Microsoft.Authorization schema copied
    "Microsoft.ManagedIdentity/userAssignedIdentities",  # no Microsoft.ManagedIdentity schema copied
}

SUBSCRIPTION_ID = "00000000-1111-2222-3333-444444444444"
TENANT_ID = "99999999-8888-7777-6666-555555555555"
RESOURCE_GROUP = "rg-amlops-test"
RG_ID = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
PRINCIPAL = "0a1b2c3d-0000-4000-8000-00000000abcd"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


@lru_cache(maxsize=None)
def template() -> dict[str, Any]:
    return read_json(TEMPLATE_PATH)


def fresh_template() -> dict[str, Any]:
    """A copy a test may break on purpose."""
    return copy.deepcopy(template())


def resources_of_type(tpl: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in tpl["resources"] if r["type"].lower() == resource_type.lower()]


def one_resource(tpl: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources_of_type(tpl, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return found[0]


@lru_cache(maxsize=None)
def load_iac_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("iac_tool", SETUP / "iac_tool.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- ARM expressions

class ExpressionError(Exception):
    """An expression does not parse, uses an unknown function or references something undeclared."""


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<punct>[(),.\[\]]))")

Node = tuple[Any, ...]


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]") \
        and not value.startswith("[[")


def parse_expression(text: str) -> Node:
    """Parse the inside of an "[...]" template expression into a small tuple tree."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"cannot parse {text!r} at {position}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal index
        token = peek()
        if token is None or (expected is not None and token[1] != expected):
            raise ExpressionError(f"expected {expected!r} in {text!r}, got {token}")
        index += 1
        return token

    def primary() -> Node:
        kind, value = take()
        if kind == "str":
            node: Node = ("lit", value[1:-1].replace("''", "'"))
        elif kind == "num":
            node = ("lit", int(value))
        elif kind == "id":
            take("(")
            args: list[Node] = []
            if peek() != ("punct", ")"):
                args.append(primary())
                while peek() == ("punct", ","):
                    take(",")
                    args.append(primary())
            take(")")
            node = ("call", value.lower(), args)
        else:
            raise ExpressionError(f"unexpected {value!r} in {text!r}")
        while peek() in (("punct", "."), ("punct", "[")):
            if take()[1] == ".":
                node = ("prop", node, take()[1])
            else:
                node = ("index", node, primary())
                take("]")
        return node

    tree = primary()
    if index != len(tokens):
        raise ExpressionError(f"trailing tokens in {text!r}")
    return tree


def functions_in(node: Node) -> Iterator[str]:
    if node[0] == "call":
        yield node[1]
        for argument in node[2]:
            yield from functions_in(argument)
    elif node[0] in ("prop", "index"):
        yield from functions_in(node[1])
        if node[0] == "index":
            yield from functions_in(node[2])


def template_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_strings(key)
            yield from template_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from template_strings(item)


def resource_id(resource_type: str, *names: str) -> str:
    namespace, *types = resource_type.split("/")
    if not namespace or not types or any(not part for part in types) or len(types) != len(names):
        raise ExpressionError(f"resourceId({resource_type!r}, {names}) does not match the type's segments")
    path = "/".join(f"{kind}/{name}" for kind, name in zip(types, names))
    return f"{RG_ID}/providers/{namespace}/{path}"


def net_format(pattern: str, *args: Any) -> str:
    """.NET composite formatting as ARM's format() does it ({0}, {{, }})."""
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        value = args[int(match.group(1))]
        return str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"\{\{|\}\}|\{(\d+)\}", one, pattern)


def arm_guid(*parts: str) -> str:
    # Not ARM's hash, but like it a pure function of its arguments: what the tests rely on.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))


@dataclass
class Evaluator:
    """Evaluates a template for given parameter values with the subset of ARM functions it uses."""

    tpl: dict[str, Any]
    values: dict[str, Any]
    location: str = "westeurope"
    resource_ids: list[str] = field(default_factory=list)
    # reference(id, ...): the deployed resource's state, which only Azure knows (a managed identity's
    # principalId); by default a stand-in that is the same for the same resource id
    # (a resource's system-assigned identity in its 'full' state, a user-assigned identity's own principalId)
    runtime: Callable[[str], dict[str, Any]] = field(default=lambda found: {
        "identity": {"type": "SystemAssigned", "principalId": arm_guid("principal", found)},
        "principalId": f"principal-of:{found}"})
    _variables: dict[str, Any] = field(default_factory=dict)
    _resolving: set[str] = field(default_factory=set)

    def parameter(self, name: str) -> Any:
        declared = self.tpl.get("parameters", {})
        if name not in declared:
            raise ExpressionError(f"parameters('{name}') is not declared")
        if name in self.values:
            return self.values[name]
        if "defaultValue" not in declared[name]:
            raise ExpressionError(f"parameter '{name}' has no value and no default")
        return self.value(declared[name]["defaultValue"])

    def variable(self, name: str) -> Any:
        declared = self.tpl.get("variables", {})
        if name not in declared:
            raise ExpressionError(f"variables('{name}') is not declared")
        if name not in self._variables:
            if name in self._resolving:
                raise ExpressionError(f"variable '{name}' refers to itself")
            self._resolving.add(name)
            self._variables[name] = self.value(declared[name])
            self._resolving.discard(name)
        return self._variables[name]

    def value(self, raw: Any) -> Any:
        if isinstance(raw, str):
            if is_expression(raw):
                return self.node(parse_expression(raw[1:-1]))
            return raw[1:] if raw.startswith("[[") else raw
        if isinstance(raw, dict):
            return {self.value(key): self.value(item) for key, item in raw.items()}
        if isinstance(raw, list):
            return [self.value(item) for item in raw]
        return raw

    def node(self, node: Node) -> Any:
        if node[0] == "lit":
            return node[1]
        if node[0] == "prop":
            return self.node(node[1])[node[2]]
        if node[0] == "index":
            return self.node(node[1])[self.node(node[2])]
        name, args = node[1], [self.node(argument) for argument in node[2]]
        function = self.functions().get(name)
        if function is None:
            raise ExpressionError(f"function {name}() is not supported by this evaluator")
        return function(*args)

    def functions(self) -> dict[str, Callable[..., Any]]:
        def concat(*parts: Any) -> Any:
            if parts and all(isinstance(part, list) for part in parts):
                return [item for part in parts for item in part]
            return "".join(str(part).lower() if isinstance(part, bool) else str(part) for part in parts)

        def record_resource_id(resource_type: str, *names: str) -> str:
            found = resource_id(resource_type, *names)
            self.resource_ids.append(found)
            return found

        def subscription_resource_id(resource_type: str, *names: str) -> str:
            return resource_id(resource_type, *names).replace(
                f"/resourceGroups/{RESOURCE_GROUP}", "", 1)

        return {
            "parameters": self.parameter,
            "variables": self.variable,
            "concat": concat,
            "format": net_format,
            "tolower": lambda text: text.lower(),
            "toupper": lambda text: text.upper(),
            "replace": lambda text, old, new: text.replace(old, new),
            "substring": lambda text, start, length=None: text[start:][:length],
            "take": lambda items, count: items[:count],
            "length": len,
            "empty": lambda item: item is None or len(item) == 0,
            "not": lambda flag: not flag,
            "and": lambda *flags: all(flags),
            "or": lambda *flags: any(flags),
            "equals": lambda left, right: left == right,
            "if": lambda flag, yes, no: yes if flag else no,
            "guid": arm_guid,
            "reference": lambda found, api_version=None, full=None: self.runtime(found),
            "resourceid": record_resource_id,
            "subscriptionresourceid": subscription_resource_id,
            "resourcegroup": lambda: {"id": RG_ID, "name": RESOURCE_GROUP, "location": self.location},
            "subscription": lambda: {"id": f"/subscriptions/{SUBSCRIPTION_ID}",
                                     "subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID},
        }

    def resource(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {key: self.value(item) for key, item in raw.items()}

    def full_id(self, raw: dict[str, Any]) -> str:
        """The id ARM gives this resource: resourceId() of its type and name, under its scope if any."""
        name, resource_type = self.value(raw["name"]), self.value(raw["type"])
        if "scope" in raw:
            return f"{RG_ID}/providers/{self.value(raw['scope'])}/providers/{resource_type}/{name}"
        return resource_id(resource_type, *name.split("/"))


def evaluator(base_name: str = "amlops-demo", tpl: dict[str, Any] | None = None, **values: Any) -> Evaluator:
    return Evaluator(tpl if tpl is not None else template(), {"baseName": base_name, **values})


# --------------------------------------------------------------------------- schemas

def relax_discriminated_bases(schema: Any, root: dict[str, Any] | None = None) -> Any:
    """Let each allOf piece with additionalProperties: false accept the properties its sibling
    pieces declare. The Azure ML schema builds `Compute` as allOf[base with additionalProperties:
    false, oneOf subtypes]: a plain validator rejects every compute (README pitfall). Other
    properties stay rejected."""
    root = schema if root is None else root

    def declared(piece: Any, seen: set[str]) -> set[str]:
        if not isinstance(piece, dict):
            return set()
        names = set(piece.get("properties", {}))
        reference = piece.get("$ref", "")
        if reference.startswith("#/") and reference not in seen:
            target: Any = root
            for part in reference[2:].split("/"):
                target = target[part]
            names |= declared(target, seen | {reference})
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in piece.get(key, []):
                names |= declared(sub, seen)
        return names

    if isinstance(schema, dict):
        pieces = schema.get("allOf")
        if isinstance(pieces, list):
            for piece in pieces:
                if isinstance(piece, dict) and piece.get("additionalProperties") is False:
                    others = set().union(*(declared(other, set()) for other in pieces if other is not piece))
                    for name in others - set(piece.get("properties", {})):
                        piece.setdefault("properties", {})[name] = {}
        for item in schema.values():
            relax_discriminated_bases(item, root)
    elif isinstance(schema, list):
        for item in schema:
            relax_discriminated_bases(item, root)
    return schema


@dataclass
class ArmSchemas:
    registry: Registry
    validator_class: Any
    # (type lower-cased, apiVersion) -> "<schema id>#/resourceDefinitions/<name>"
    resource_schemas: dict[tuple[str, str], str]
    missing_refs: set[str]


@lru_cache(maxsize=None)
def arm_schemas() -> ArmSchemas:
    documents: dict[str, Any] = {}
    for path in sorted(ARM_SCHEMAS.rglob("*.json")):
        document = relax_discriminated_bases(read_json(path))
        documents[document["id"].rstrip("#")] = document
    # The full template schema lets `resources` items be any of thousands of resource schemas
    # (common/autogeneratedResources.json, Microsoft.Logic, Sendgrid...) that are not copied here.
    # Keep every top-level rule but check each item against the generic resourceBase only; the
    # resource-specific schemas are applied one resource at a time below.
    top = documents[TEMPLATE_SCHEMA_ID]
    top["definitions"]["resource"] = {"$ref": "#/definitions/resourceBase"}

    resource_schemas: dict[tuple[str, str], str] = {}
    for schema_id, document in documents.items():
        for name, definition in document.get("resourceDefinitions", {}).items():
            types = definition["properties"]["type"]["enum"]
            versions = definition["properties"]["apiVersion"]["enum"]
            for resource_type in types:
                for version in versions:
                    resource_schemas[(resource_type.lower(), version)] = \
                        f"{schema_id}#/resourceDefinitions/{name}"

    missing: set[str] = set()

    def retrieve(uri: str) -> Resource[Any]:
        # A schema file that is not in the reference specs: permissive, and remembered so a test can
        # say which ones were needed.
        missing.add(uri)
        return Resource.from_contents({}, default_specification=DRAFT4)

    registry: Registry = Registry(retrieve=retrieve).with_resources(
        (schema_id, DRAFT4.create_resource(document)) for schema_id, document in documents.items())
    # The ARM schemas say draft-04 but use `const` (draft-06) to pin discriminators: honour it.
    validator_class = jsonschema.validators.extend(
        jsonschema.Draft4Validator, {"const": jsonschema.Draft6Validator.VALIDATORS["const"]})
    return ArmSchemas(registry, validator_class, resource_schemas, missing)


def arm_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    schemas = arm_schemas()
    validator = schemas.validator_class(schema, registry=schemas.registry)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
            for error in validator.iter_errors(instance)]


def resource_schema(resource: dict[str, Any]) -> dict[str, Any]:
    """The schema ARM tooling applies to one resource: resourceBase and its resource definition."""
    parts: list[dict[str, Any]] = [{"$ref": TEMPLATE_SCHEMA_ID + "#/definitions/resourceBase"}]
    key = (resource["type"].lower(), resource["apiVersion"])
    if key in arm_schemas().resource_schemas:
        parts.append({"$ref": arm_schemas().resource_schemas[key]})
    return {"allOf": parts}


@lru_cache(maxsize=None)
def pipelines_validator() -> jsonschema.Draft7Validator:
    schema = read_json(PIPELINES_SCHEMA)
    registry: Registry = Registry().with_resource(schema["$id"], DRAFT7.create_resource(schema))
    return jsonschema.Draft7Validator(schema, registry=registry)


@lru_cache(maxsize=None)
def pipeline() -> dict[str, Any]:
    return yaml.safe_load(PIPELINE_PATH.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- base names

def allowed_base_names() -> list[str]:
    """Representative base names the template's baseName parameter allows: every length from the
    shortest to the longest, without and with as many hyphens as possible, digits, and a few
    realistic ones. Each is checked against the documented pattern first."""
    spec = template()["parameters"]["baseName"]
    low, high = spec["minLength"], spec["maxLength"]
    names = {"abc", "a-b", "a1b", "a-1", "x123", "my-ml-project", "team-1-dev", "amlops-demo"}
    for length in range(low, high + 1):
        names.add(("a" + "bcdefghijklmnopqrstuvwxyz0123456789" * 2)[:length])
        names.add(("z" + "9" * 40)[:length])
        hyphenated = "a" + "-b" * length
        names.add(hyphenated[:length] if hyphenated[length - 1] != "-" else hyphenated[:length - 1] + "c")
    pattern = spec["metadata"]["namePattern"]
    allowed = sorted(n for n in names if low <= len(n) <= high and re.fullmatch(pattern, n))
    assert len(allowed) == len(names), "a sample base name breaks the template's own rules"
    return allowed


# Naming rules of each service (https://learn.microsoft.com/azure/azure-resource-manager/management/
# resource-name-rules), as regular expressions on the final names.
NAME_RULES: dict[str, str] = {
    "Microsoft.Storage/storageAccounts": r"[a-z0-9]{3,24}",
    "Microsoft.Storage/storageAccounts/blobServices/containers": r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]",
    "Microsoft.KeyVault/vaults": r"(?=.{3,24}$)[a-zA-Z](?!.*--)[a-zA-Z0-9-]*[a-zA-Z0-9]",
    "Microsoft.ContainerRegistry/registries": r"[a-zA-Z0-9]{5,50}",
    "Microsoft.OperationalInsights/workspaces": r"[a-zA-Z0-9][a-zA-Z0-9-]{2,61}[a-zA-Z0-9]",
    "Microsoft.Insights/components": r"[^%&\\?/]{0,259}[^%&\\?/. ]",
    "Microsoft.MachineLearningServices/workspaces": r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}",
    # AmlCompute: 2-16 letters, digits and hyphens, starting with a letter
    "Microsoft.MachineLearningServices/workspaces/computes": r"[a-zA-Z][a-zA-Z0-9-]{1,15}",
    "Microsoft.Authorization/roleAssignments": r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
    "Microsoft.ManagedIdentity/userAssignedIdentities": r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}",
}


def name_violations(tpl: dict[str, Any], base_name: str) -> list[str]:
    ev = evaluator(base_name, tpl, pipelinePrincipalObjectId=PRINCIPAL)
    problems = []
    for raw in tpl["resources"]:
        name = ev.value(raw["name"]).split("/")[-1]  # a child's own name is its last segment
        if not re.fullmatch(NAME_RULES[raw["type"]], name):
            problems.append(f"{raw['type']} name {name!r} (baseName {base_name!r})")
    return problems


@pytest.mark.parametrize("base_name", allowed_base_names())
def test_derived_names_obey_each_services_naming_rules(base_name: str) -> None:
    assert name_violations(template(), base_name) == []


@pytest.mark.parametrize("base_name", allowed_base_names())
def test_evaluated_resources_are_valid_for_their_schemas(base_name: str) -> None:
    """With real names and values in place of expressions, each resource still matches its schema
    (which adds the schemas' own name patterns: storage, registry, workspace)."""
    ev = evaluator(base_name, pipelinePrincipalObjectId=PRINCIPAL)
    for raw in template()["resources"]:
        assert arm_errors(ev.resource(raw), resource_schema(raw)) == [], raw["type"]


def test_base_name_limits_are_tight() -> None:
    """maxLength is the longest base name every service accepts: one character more breaks a name
    (the key vault's 24), so the test above would catch a loosened limit."""
    high = template()["parameters"]["baseName"]["maxLength"]
    assert name_violations(template(), "a" * high) == []
    assert any("KeyVault" in problem for problem in name_violations(template(), "a" * (high + 1)))


def test_names_that_must_be_unique_in_azure_drop_hyphens_but_keep_the_base_name() -> None:
    names = {r["type"]: evaluator("my-ml-project").value(r["name"]) for r in template()["resources"]}
    assert names["Microsoft.Storage/storageAccounts"] == "stmymlproject"
    assert names["Microsoft.KeyVault/vaults"] == "kv-mymlproject"
    assert names["Microsoft.ContainerRegistry/registries"] == "acrmymlproject"
    assert names["Microsoft.MachineLearningServices/workspaces"] == "mlw-my-ml-project"
    # the names the rest of the project relies on
    container = names["Microsoft.Storage/storageAccounts/blobServices/containers"]
    assert container == "stmymlproject/default/trainingdata"
    assert names["Microsoft.MachineLearningServices/workspaces/computes"] == "mlw-my-ml-project/cpu-cluster"


# --------------------------------------------------------------------------- syntax

def test_template_matches_the_deployment_template_schema() -> None:
    assert arm_errors(template(), {"$ref": TEMPLATE_SCHEMA_ID + "#"}) == []
    assert template()["$schema"].rstrip("#") == TEMPLATE_SCHEMA_ID


def test_deployment_template_check_rejects_a_broken_template() -> None:
    broken = fresh_template()
    broken["parameters"]["baseName"]["type"] = "text"  # not an ARM parameter type
    del broken["resources"][0]["type"]  # every resource needs a type
    errors = arm_errors(broken, {"$ref": TEMPLATE_SCHEMA_ID + "#"})
    assert len(errors) >= 2


@pytest.mark.parametrize("index", range(len(template()["resources"])),
                         ids=[f"{r['type']}@{r['apiVersion']}" for r in template()["resources"]])
def test_each_resource_matches_its_resource_schema(index: int) -> None:
    resource = template()["resources"][index]
    has_schema = (resource["type"].lower(), resource["apiVersion"]) in arm_schemas().resource_schemas
    # Every type we deploy has a local schema at exactly this apiVersion, except the known ones.
    assert has_schema == (resource["type"] not in TYPES_WITHOUT_LOCAL_SCHEMA)
    assert arm_errors(resource, resource_schema(resource)) == []


def test_resource_schema_check_rejects_wrong_properties() -> None:
    tpl = fresh_template()
    storage = one_resource(tpl, "Microsoft.Storage/storageAccounts")
    storage["properties"]["minimumTlsVersion"] = "TLS1.2"  # the enum is TLS1_2
    assert arm_errors(storage, resource_schema(storage)) != []
    for mutate in (
        lambda c: c["properties"]["properties"].update(vmPriority="Spot"),  # Dedicated or LowPriority
        lambda c: c["properties"]["properties"]["scaleSettings"].pop("maxNodeCount"),  # required
        lambda c: c["properties"].update(nodeCount=1),  # not a Compute property (allOf merge keeps this)
    ):
        compute = one_resource(fresh_template(), "Microsoft.MachineLearningServices/workspaces/computes")
        mutate(compute)
        assert arm_errors(compute, resource_schema(compute)) != []


def test_schema_files_that_are_not_in_specs_were_not_needed() -> None:
    for resource in template()["resources"]:
        arm_errors(resource, resource_schema(resource))
    arm_errors(template(), {"$ref": TEMPLATE_SCHEMA_ID + "#"})
    assert arm_schemas().missing_refs == set()


def test_example_parameters_file_is_valid_and_fits_the_template() -> None:
    parameters = read_json(PARAMETERS_PATH)
    assert arm_errors(parameters, {"$ref": PARAMETERS_SCHEMA_ID + "#"}) == []
    assert parameters["$schema"].rstrip("#") == PARAMETERS_SCHEMA_ID
    assert load_iac_tool().check_parameters_file(PARAMETERS_PATH) == []


def test_parameter_check_reports_each_kind_of_mistake() -> None:
    problems = load_iac_tool().parameter_problems({
        "baseName": "My_Project",  # uppercase and underscore
        "computeMaxNodes": 0,  # below minValue
        "computeLowPriority": "yes",  # not a bool
        "pipelinePrincipalType": "Robot",  # not an allowed value
        "vmSize": "Standard_D2",  # not a parameter
    })
    assert len(problems) == 5, problems
    assert load_iac_tool().parameter_problems({}) == ["parameter 'baseName' is required"]
    assert load_iac_tool().parameter_problems({"baseName": "a" * 22})  # longer than maxLength


def test_check_parameters_command_fails_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.parameters.json"
    bad.write_text(json.dumps({"$schema": PARAMETERS_SCHEMA_ID + "#", "contentVersion": "1.0.0.0",
                               "parameters": {"baseName": {"value": "-bad-"}}}), encoding="utf-8")
    tool = load_iac_tool()
    assert tool.main(["check-parameters", str(bad)]) == 1
    assert "##vso[task.logissue type=error]parameter 'baseName'" in capsys.readouterr().out
    assert tool.main(["check-parameters", str(PARAMETERS_PATH)]) == 0


# --------------------------------------------------------------------------- references

def all_expressions(tpl: dict[str, Any]) -> list[str]:
    return [text for text in template_strings(tpl) if is_expression(text)]


def test_every_expression_parses() -> None:
    expressions = all_expressions(template())
    assert len(expressions) > 30
    for text in expressions:
        parse_expression(text[1:-1])


def test_only_deterministic_functions_are_used() -> None:
    """Names and ids must come out the same on every run: newGuid() and utcNow() would create
    new resources or role assignments each time, uniqueString() would hide the names from users,
    reference()/list*() would tie evaluation to live resources. The one exception: a managed
    identity's principalId exists only once Azure made it, so reference() may give a role
    assignment's principalId (never a name, scope or id)."""
    allowed = {"parameters", "variables", "concat", "format", "tolower", "replace", "empty", "not",
               "if", "guid", "resourceid", "subscriptionresourceid", "resourcegroup", "subscription"}
    tpl = fresh_template()
    principals = [raw["properties"].pop("principalId")
                  for raw in resources_of_type(tpl, "Microsoft.Authorization/roleAssignments")]
    used = {name for text in all_expressions(tpl) for name in functions_in(parse_expression(text[1:-1]))}
    assert used <= allowed, used - allowed
    for text in principals:
        assert set(functions_in(parse_expression(text[1:-1]))) <= allowed | {"reference"}, text


@pytest.mark.parametrize("principal", ["", PRINCIPAL])
def test_every_parameter_variable_and_resource_reference_resolves(principal: str) -> None:
    """Evaluate everything: parameters(), variables() and resourceId() must name declared
    parameters, declared variables and resources of this template."""
    tpl = template()
    ev = evaluator(pipelinePrincipalObjectId=principal)
    ev.value(tpl["variables"])
    ev.value(tpl["outputs"])
    ids = {ev.full_id(raw) for raw in tpl["resources"]}
    for raw in tpl["resources"]:
        ev.resource(raw)
    assert ev.resource_ids and set(ev.resource_ids) <= ids, set(ev.resource_ids) - ids


def test_reference_check_catches_undeclared_names() -> None:
    for mutate in (
        lambda t: t["variables"].update(storageAccountName="[concat('st', variables('compact'))]"),
        lambda t: t["outputs"]["workspaceName"].update(value="[parameters('workspace')]"),
        lambda t: one_resource(t, "Microsoft.MachineLearningServices/workspaces")["properties"].update(
            storageAccount="[resourceId('Microsoft.Storage/storageAccounts/', "
                           "variables('storageAccountName'))]"),
    ):
        tpl = fresh_template()
        mutate(tpl)
        with pytest.raises(ExpressionError):
            ev = evaluator(tpl=tpl)
            ev.value(tpl["variables"])
            ev.value(tpl["outputs"])
            for raw in tpl["resources"]:
                ev.resource(raw)


def dependency_graph(tpl: dict[str, Any]) -> dict[str, set[str]]:
    ev = evaluator(tpl=tpl, pipelinePrincipalObjectId=PRINCIPAL)
    graph = {ev.full_id(raw): set(ev.value(raw.get("dependsOn", []))) for raw in tpl["resources"]}
    unknown = {target for targets in graph.values() for target in targets} - set(graph)
    assert not unknown, f"dependsOn names resources that are not in the template: {unknown}"
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path + [node, target]
            if target not in state:
                cycle = visit(target, path + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_depends_on_resolves_and_has_no_cycle() -> None:
    assert find_cycle(dependency_graph(template())) is None


def test_cycle_check_finds_a_cycle() -> None:
    tpl = fresh_template()
    storage = one_resource(tpl, "Microsoft.Storage/storageAccounts")
    storage["dependsOn"] = [
        "[resourceId('Microsoft.MachineLearningServices/workspaces', variables('workspaceName'))]"]
    assert find_cycle(dependency_graph(tpl)) is not None


def test_each_resource_waits_for_the_template_resources_it_refers_to() -> None:
    """Whatever a resource names with resourceId() (linked resources, scopes) must be deployed
    before it, or the first deployment fails with ResourceNotFound / ParentResourceNotFound."""
    tpl = template()
    graph = dependency_graph(tpl)
    for raw in tpl["resources"]:
        ev = evaluator(pipelinePrincipalObjectId=PRINCIPAL)
        own = ev.full_id(raw)
        ev.resource_ids.clear()
        ev.value({key: value for key, value in raw.items() if key != "dependsOn"})
        referenced = {found for found in ev.resource_ids if found in graph and found != own}
        # a child (name a/b) needs its parent, which resourceId() of the child does not list
        parent_names = ev.value(raw["name"]).split("/")[:-1]
        if parent_names:
            parent_type = "/".join(raw["type"].split("/")[:2])
            referenced.add(resource_id(parent_type, parent_names[0]))
        assert referenced <= reachable(graph, own), (raw["type"], referenced - reachable(graph, own))


# --------------------------------------------------------------------------- outputs

def test_outputs_give_the_names_the_project_uses() -> None:
    tpl = template()
    ev = evaluator("my-ml-project")
    outputs = {name: ev.value(spec["value"]) for name, spec in tpl["outputs"].items()}
    names = {raw["type"]: ev.value(raw["name"]) for raw in tpl["resources"]}
    assert outputs["workspaceName"] == names["Microsoft.MachineLearningServices/workspaces"]
    assert outputs["storageAccountName"] == names["Microsoft.Storage/storageAccounts"]
    assert outputs["containerName"] == "trainingdata"
    container = names["Microsoft.Storage/storageAccounts/blobServices/containers"]
    assert container.endswith("/default/trainingdata")
    # the sample pipeline's `default_compute: azureml:cpu-cluster`
    assert outputs["computeName"] == "cpu-cluster"
    assert names["Microsoft.MachineLearningServices/workspaces/computes"].endswith("/cpu-cluster")
    assert outputs["subscriptionId"] == SUBSCRIPTION_ID
    assert outputs["resourceGroupName"] == RESOURCE_GROUP
    # every output the pipeline exports exists, so export-outputs never fails on a good deployment
    assert set(load_iac_tool().OUTPUT_VARIABLES) <= set(outputs)


def arm_outputs_json(base_name: str) -> str:
    """What AzureResourceManagerTemplateDeployment@3 puts in its deploymentOutputs variable:
    JSON.stringify(properties.outputs) of the deployment."""
    ev = evaluator(base_name)
    return json.dumps({name: {"type": spec["type"].capitalize(), "value": ev.value(spec["value"])}
                       for name, spec in template()["outputs"].items()})


def test_export_outputs_sets_the_pipeline_variables(tmp_path: Path) -> None:
    out = io.StringIO()
    exported = load_iac_tool().export_outputs(arm_outputs_json("team-1-dev"), out, str(tmp_path))
    lines = out.getvalue().splitlines()
    assert "##vso[task.setvariable variable=WORKSPACE_NAME]mlw-team-1-dev" in lines
    assert "##vso[task.setvariable variable=STORAGE_ACCOUNT_NAME]stteam1dev" in lines
    assert "##vso[task.setvariable variable=SUBSCRIPTION_ID]" + SUBSCRIPTION_ID in lines
    assert exported["COMPUTE_NAME"] == "cpu-cluster"
    assert lines[-1] == f"##vso[task.uploadsummary]{tmp_path / 'amlops-infrastructure.md'}"
    assert "mlw-team-1-dev" in (tmp_path / "amlops-infrastructure.md").read_text(encoding="utf-8")


def test_export_outputs_fails_clearly_on_missing_outputs() -> None:
    tool = load_iac_tool()
    with pytest.raises(SystemExit, match="workspaceName"):
        only_storage = {"storageAccountName": {"type": "String", "value": "st1"}}
        tool.export_outputs(json.dumps(only_storage), io.StringIO())
    with pytest.raises(SystemExit, match="not JSON"):
        tool.export_outputs("$(armOutputs)", io.StringIO())  # the macro was never set


# --------------------------------------------------------------------------- re-runs

def test_key_vault_can_be_deployed_again() -> None:
    vault = one_resource(template(), "Microsoft.KeyVault/vaults")["properties"]
    # createMode 'recover' fails on every ordinary run (there is no deleted vault to recover) and
    # 'default' cannot take over a soft-deleted one (VaultAlreadyExists): leave it out, so the PUT
    # creates the vault the first time and updates it afterwards.
    assert "createMode" not in vault
    # MLOpsPython sent `accessPolicies: []` and so wiped the workspace's access policy on every
    # re-run; with RBAC authorization there are no access policies to overwrite.
    assert vault["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vault
    # Soft delete cannot be turned off once on, and purge protection cannot be turned off once
    # on ("enablePurgeProtection: false" is rejected): never send a value that could go back.
    assert vault["enableSoftDelete"] is True
    assert vault.get("enablePurgeProtection", True) is True
    # The retention period is fixed at creation; a changed value would fail on the next run.
    assert "softDeleteRetentionInDays" not in vault


def test_storage_account_only_sends_properties_that_may_be_sent_again() -> None:
    storage = one_resource(template(), "Microsoft.Storage/storageAccounts")
    properties = storage["properties"]
    # isHnsEnabled (even `false`) on an existing account fails with AccountPropertyCannotBeUpdated,
    # and Azure ML cannot use an HNS account at all ("Cannot use storage with HNS enabled").
    for creation_only in ("isHnsEnabled", "isNfsV3Enabled", "isSftpEnabled", "largeFileSharesState"):
        assert creation_only not in properties
    # kind cannot change after creation: a literal, never a parameter somebody could change.
    assert storage["kind"] == "StorageV2"
    assert storage["sku"] == {"name": "Standard_LRS"}
    # the required security settings, identical on every run
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    for container in resources_of_type(template(), "Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert container["properties"] == {"publicAccess": "None"}


def test_settings_azure_ml_changes_itself_are_not_reset() -> None:
    # Azure ML adds CORS rules to the blob service of its storage account: declaring
    # blobServices/default with properties would remove them on every re-run.
    assert resources_of_type(template(), "Microsoft.Storage/storageAccounts/blobServices") == []
    # Azure ML may enable the registry admin user (and ACI pulls with it): the default keeps it on,
    # so a re-run does not switch it off under running deployments.
    registry = one_resource(template(), "Microsoft.ContainerRegistry/registries")
    assert evaluator().value(registry["properties"]["adminUserEnabled"]) is True


def test_workspace_links_exactly_the_template_resources() -> None:
    """"Storage Account update is not supported yet" (MLOpsPython #364): the workspace refuses any
    change of its linked resource ids, so each must be the very id of the template resource, in
    the same spelling on every run (MLOpsPython wrote 'Microsoft.Storage/storageAccounts/')."""
    tpl = template()
    ev = evaluator()
    workspace = ev.resource(one_resource(tpl, "Microsoft.MachineLearningServices/workspaces"))
    links = {
        "storageAccount": "Microsoft.Storage/storageAccounts",
        "keyVault": "Microsoft.KeyVault/vaults",
        "applicationInsights": "Microsoft.Insights/components",
        "containerRegistry": "Microsoft.ContainerRegistry/registries",
    }
    for key, resource_type in links.items():
        assert workspace["properties"][key] == ev.full_id(one_resource(tpl, resource_type)), key
    # fixed at creation: hbiWorkspace, the identity kind, the sku tier stay constant or absent
    assert "hbiWorkspace" not in workspace["properties"]
    assert workspace["identity"] == {"type": "SystemAssigned"}
    assert workspace["sku"] == {"name": "Basic", "tier": "Basic"}


def test_workspace_link_check_catches_the_mlopspython_spelling() -> None:
    tpl = fresh_template()
    workspace = one_resource(tpl, "Microsoft.MachineLearningServices/workspaces")
    workspace["properties"]["storageAccount"] = "[concat(resourceGroup().id, '/providers/Microsoft.Storage/" \
        "storageAccounts/', variables('storageAccountName'), '/')]"
    ev = evaluator(tpl=tpl)
    linked = ev.value(workspace["properties"]["storageAccount"])
    assert linked != ev.full_id(one_resource(tpl, "Microsoft.Storage/storageAccounts"))


# built-in role definition id -> type of the scope (None: the resource group)
ROLES: dict[str, str | None] = {
    # AzureML Data Scientist
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "Microsoft.MachineLearningServices/workspaces",
    # Storage Blob Data Contributor
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Microsoft.Storage/storageAccounts",
    # Contributor, for Azure Container Instances in the resource group
    "b24988ac-6180-42a0-ab88-20f7382dd24c": None,
    # Key Vault Secrets Officer, for the scoring keys of ACI deployments
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Microsoft.KeyVault/vaults",
}


def pipeline_role_assignments() -> list[dict[str, Any]]:
    return [raw for raw in resources_of_type(template(), "Microsoft.Authorization/roleAssignments")
            if raw["properties"]["principalId"] == "[parameters('pipelinePrincipalObjectId')]"]


def role_assignments(principal: str) -> dict[str, dict[str, Any]]:
    """The evaluated role assignments of the pipeline's principal, by role definition id."""
    ev = evaluator(pipelinePrincipalObjectId=principal)
    found = {}
    for raw in pipeline_role_assignments():
        assignment = ev.resource(raw)
        found[assignment["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]] = assignment
    return found


def test_role_assignments_are_the_three_the_pipeline_needs_and_optional() -> None:
    assignments = role_assignments(PRINCIPAL)
    assert set(assignments) == set(ROLES)
    tpl = template()
    for role, scope_type in ROLES.items():
        assignment = assignments[role]
        assert assignment["condition"] is True
        assert assignment["properties"]["principalId"] == PRINCIPAL
        if scope_type is None:
            assert "scope" not in assignment
        else:
            scope = one_resource(tpl, scope_type)
            assert f"{RG_ID}/providers/{assignment['scope']}" == evaluator().full_id(scope)
    # no object id, no role assignments (and no need for Owner rights to deploy)
    assert all(assignment["condition"] is False for assignment in role_assignments("").values())


def test_role_assignment_names_are_deterministic_per_scope_principal_and_role() -> None:
    """A name from newGuid() makes the second run fail with RoleAssignmentExists (same principal,
    role and scope under a new name); guid(scope, principal, role) gives the same name again and
    a different one whenever one of the three differs."""
    first, again = role_assignments(PRINCIPAL), role_assignments(PRINCIPAL)
    assert {role: a["name"] for role, a in first.items()} == {role: a["name"] for role, a in again.items()}
    other = role_assignments("11111111-2222-4333-8444-555555555555")
    assert all(first[role]["name"] != other[role]["name"] for role in ROLES)
    assert len({a["name"] for a in first.values()}) == len(ROLES)
    ev = evaluator(pipelinePrincipalObjectId=PRINCIPAL)
    for raw in pipeline_role_assignments():
        call = parse_expression(raw["name"][1:-1])
        assert call[:2] == ("call", "guid")
        scope = f"{RG_ID}/providers/{ev.value(raw['scope'])}" if "scope" in raw else RG_ID
        role = ev.value(raw["properties"]["roleDefinitionId"])
        # the principal: the parameter, or (a managed identity, known only after deployment) its resource's id
        principal = PRINCIPAL if "pipelinePrincipalObjectId" in raw["properties"]["principalId"] else \
            ev.value(raw["dependsOn"][-1])
        assert [ev.node(argument) for argument in call[2]] == [scope, principal, role]


def test_the_compute_cluster_reads_the_training_data_with_its_own_identity() -> None:
    """Jobs read an identity-based datastore (no stored credential; the `trainingdata` one) with the job's
    identity if set, else the compute's managed identity, which needs Storage Blob Data Reader on the account
    (docs: how-to-identity-based-service-authentication, "Access data for training jobs on compute using
    managed identity"). So the cluster has a system-assigned identity, granted that role always (whoever
    deploys, and whether the run comes from Azure Pipelines or a schedule), unless the deployer may not assign
    roles and turns it off."""
    tpl = template()
    cluster = one_resource(tpl, "Microsoft.MachineLearningServices/workspaces/computes")
    assert cluster["identity"] == {"type": "SystemAssigned"}
    ev = evaluator()
    cluster_id = ev.full_id(cluster)
    [reader] = [raw for raw in resources_of_type(tpl, "Microsoft.Authorization/roleAssignments")
                if "variables('computeResourceId')" in raw["properties"]["principalId"]]
    assignment = ev.resource(reader)
    assert assignment["condition"] is True  # unless computeDataReaderRole=false (no right to assign roles)
    assert evaluator(computeDataReaderRole=False).resource(reader)["condition"] is False
    assert assignment["properties"]["roleDefinitionId"].endswith("/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")
    assert assignment["properties"]["principalId"] == ev.runtime(cluster_id)["identity"]["principalId"]
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    storage = one_resource(tpl, "Microsoft.Storage/storageAccounts")
    assert f"{RG_ID}/providers/{assignment['scope']}" == ev.full_id(storage)
    assert {ev.full_id(storage), cluster_id} <= set(assignment["dependsOn"])


def test_role_assignments_name_the_principal_type() -> None:
    # Without principalType a freshly created service principal often fails with
    # PrincipalNotFound (directory replication delay).
    types = {a["properties"]["principalType"] for a in role_assignments(PRINCIPAL).values()}
    assert types == {"ServicePrincipal"}


def test_compute_cluster_scales_to_zero_and_sends_the_same_settings_again() -> None:
    cluster = one_resource(template(), "Microsoft.MachineLearningServices/workspaces/computes")
    assert cluster["properties"]["computeType"] == "AmlCompute"
    settings = cluster["properties"]["properties"]
    # idle clusters cost nothing
    assert settings["scaleSettings"]["minNodeCount"] == 0
    # Omitted means "NotSpecified", which the API documents as valid only when the cluster is
    # created (the service then stores Enabled or Disabled): send the stored value every time.
    assert settings["remoteLoginPortPublicAccess"] == "Disabled"
    # SKU, max nodes and priority are parameters
    low = evaluator(computeVmSize="Standard_D2_v3", computeMaxNodes=2,
                    computeLowPriority=True).resource(cluster)
    assert low["properties"]["properties"]["vmSize"] == "Standard_D2_v3"
    assert low["properties"]["properties"]["vmPriority"] == "LowPriority"
    assert low["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 2
    default = evaluator().resource(cluster)["properties"]["properties"]
    assert default["vmPriority"] == "Dedicated"
    assert default["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT1800S"


def test_names_depend_on_the_base_name_only() -> None:
    """Same base name, same names: a second run (even from another region setting or with role
    assignments switched on) updates the same resources instead of creating new ones."""
    def names(**values: Any) -> list[str]:
        ev = evaluator(**{"base_name": "team-1-dev", **values})
        return [ev.value(raw["name"]) for raw in template()["resources"]
                if raw["type"] != "Microsoft.Authorization/roleAssignments"]

    assert names() == names()
    assert names() == names(location="northeurope", computeMaxNodes=8, pipelinePrincipalObjectId=PRINCIPAL)
    assert all(left != right for left, right in zip(names(), names(base_name="team-2-dev")))


# --------------------------------------------------------------------------- iac-pipeline.yml

PREDEFINED_VARIABLE = re.compile(r"(Build|System|Agent|Pipeline|Environment)\.[A-Za-z.]+")
AMLOPS_COMMAND = (
    "amlops datastore upload --backend azure --subscription-id $(SUBSCRIPTION_ID) "
    "--resource-group $(RESOURCE_GROUP) --workspace-name $(WORKSPACE_NAME) --datastore $(DATASTORE_NAME) "
    "--container trainingdata --storage-account $(STORAGE_ACCOUNT_NAME) "
    "--file training/data/porto_seguro_sample.csv --path $(DATAFILE_NAME)"
)


def steps() -> list[dict[str, Any]]:
    return pipeline()["steps"]


def step_index(predicate: Callable[[dict[str, Any]], bool]) -> int:
    found = [index for index, step in enumerate(steps()) if predicate(step)]
    assert len(found) == 1, found
    return found[0]


def task_index(name: str) -> int:
    return step_index(lambda step: step.get("task") == name)


def script_of(step: dict[str, Any]) -> str:
    return step.get("script") or step.get("inputs", {}).get("inlineScript", "")


def test_pipeline_matches_the_azure_pipelines_schema() -> None:
    errors = [f"{list(error.absolute_path)}: {error.message[:200]}"
              for error in pipelines_validator().iter_errors(pipeline())]
    assert errors == []


def test_pipeline_schema_check_rejects_a_broken_pipeline() -> None:
    broken = copy.deepcopy(pipeline())
    deploy = broken["steps"][task_index("AzureResourceManagerTemplateDeployment@3")]
    deploy["inputs"]["templateFile"] = deploy["inputs"].pop("csmFile")  # not an input of the task
    assert not pipelines_validator().is_valid(broken)


def test_pipeline_runs_for_infrastructure_changes_only() -> None:
    trigger = pipeline()["trigger"]
    assert trigger == "none" or "environment_setup" in trigger["paths"]["include"]
    assert pipeline()["pr"] == "none"


def test_pipeline_deploys_this_template_incrementally_and_keeps_its_outputs() -> None:
    deploy = steps()[task_index("AzureResourceManagerTemplateDeployment@3")]["inputs"]
    assert deploy["deploymentScope"] == "Resource Group"
    assert deploy["action"] == "Create Or Update Resource Group"
    assert deploy["templateLocation"] == "Linked artifact"
    assert deploy["csmFile"] == "$(Build.SourcesDirectory)/environment_setup/azuredeploy.json"
    default_parameters = next(p["default"] for p in pipeline()["parameters"] if p["name"] == "parametersFile")
    assert deploy["csmParametersFile"] == "$(Build.SourcesDirectory)/${{ parameters.parametersFile }}"
    assert (ROOT / default_parameters).resolve() == PARAMETERS_PATH
    # Complete mode would delete what Azure ML itself adds to the resource group.
    assert deploy["deploymentMode"] == "Incremental"
    assert deploy["deploymentOutputs"] == "armOutputs"
    # the parameters are checked before anything is deployed
    check = step_index(lambda step: "iac_tool.py check-parameters" in script_of(step))
    assert check < task_index("AzureResourceManagerTemplateDeployment@3")


def test_pipeline_turns_the_outputs_into_variables() -> None:
    export = step_index(lambda step: "iac_tool.py export-outputs" in script_of(step))
    assert export > task_index("AzureResourceManagerTemplateDeployment@3")
    # through the environment: `echo '$(armOutputs)'` would let the shell mangle the JSON
    assert steps()[export]["env"] == {"ARM_OUTPUTS": "$(armOutputs)"}


def test_pipeline_uploads_the_data_with_the_projects_own_command() -> None:
    cli = task_index("AzureCLI@2")
    inputs = steps()[cli]["inputs"]
    assert inputs["scriptType"] == "bash" and inputs["scriptLocation"] == "inlineScript"
    assert inputs["azureSubscription"] == "${{ parameters.serviceConnection }}"
    command = " ".join(inputs["inlineScript"].replace("\\\n", " ").split())
    assert AMLOPS_COMMAND in command
    # Python 3.11 first, then amlops with its Azure extra, then the command
    python = task_index("UsePythonVersion@0")
    assert steps()[python]["inputs"]["versionSpec"] == "3.11"
    install = step_index(lambda step: 'pip install ".[azure]"' in script_of(step))
    assert python < install < cli
    # the container the command writes to is the one the template creates
    assert "--container " + evaluator().value(template()["outputs"]["containerName"]["value"]) in command


def test_the_upload_command_parses_with_the_amlops_cli() -> None:
    """The command line of the AzureCLI@2 step is accepted by `amlops datastore upload` itself
    (parsed only: nothing is uploaded)."""
    cli = pytest.importorskip("amlops.cli")
    values = {**pipeline()["variables"], "SUBSCRIPTION_ID": SUBSCRIPTION_ID, "RESOURCE_GROUP": RESOURCE_GROUP,
              "WORKSPACE_NAME": "mlw-x", "STORAGE_ACCOUNT_NAME": "stx"}
    line = re.sub(r"\$\((\w+)\)", lambda match: values[match.group(1)], AMLOPS_COMMAND)
    words = shlex.split(line)
    assert words[:3] == ["amlops", "datastore", "upload"]
    upload = cli.main.get_command(None, "datastore").commands["upload"]
    context = upload.make_context("upload", words[3:])
    assert context.params["backend"] == "azure"
    assert context.params["datastore_name"] == "training_data"
    assert context.params["target_path"] == "porto_seguro_safe_driver.csv"
    assert (ROOT / context.params["file"]).is_file()


def test_pipeline_defines_the_variables_the_sample_pipeline_reads() -> None:
    variables = pipeline()["variables"]
    assert variables["DATASTORE_NAME"] == "training_data"
    assert variables["DATAFILE_NAME"] == "porto_seguro_safe_driver.csv"
    assert variables["RESOURCE_GROUP"] == "${{ parameters.resourceGroup }}"
    assert "WORKSPACE_NAME" in load_iac_tool().OUTPUT_VARIABLES.values()


def test_every_macro_is_defined_before_the_step_that_uses_it() -> None:
    """$(NAME) of an undefined variable stays literally "$(NAME)" and the step fails later with a
    confusing error: each one must come from `variables`, an earlier step or the agent."""
    defined = set(pipeline()["variables"])
    for step in steps():
        used = set(re.findall(r"\$\(([^)]+)\)", json.dumps(step)))
        undefined = {name for name in used - defined if not PREDEFINED_VARIABLE.fullmatch(name)}
        assert not undefined, (step.get("displayName"), undefined)
        if step.get("task") == "AzureResourceManagerTemplateDeployment@3":
            defined.add(step["inputs"]["deploymentOutputs"])
        if "iac_tool.py export-outputs" in script_of(step):
            defined |= set(load_iac_tool().OUTPUT_VARIABLES.values())


def test_every_template_parameter_reference_in_the_pipeline_exists() -> None:
    declared = {parameter["name"] for parameter in pipeline()["parameters"]}
    used = set(re.findall(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", PIPELINE_PATH.read_text(encoding="utf-8")))
    assert used == declared
    # defaults are non-empty: Azure DevOps treats an empty default as "must be given at queue time"
    assert all(str(parameter.get("default", "")).strip() for parameter in pipeline()["parameters"])


# --------------------------------------------------------------------------- ACI deployments

ACI_IDENTITY_ROLES = {
    # AcrPull on the registry: the gateway image (and custom images) without registry passwords
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "Microsoft.ContainerRegistry/registries",
    # Storage Blob Data Reader on the amlops-deployments container only: the packages, not the training data
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Microsoft.Storage/storageAccounts/blobServices/containers",
}


def test_aci_deployments_get_an_identity_that_pulls_images_and_reads_packages_only() -> None:
    """A container group restarting days later must still pull its images and read its package: the template
    creates the user-assigned identity `<workspace>-aci` (the name amlops.deploy.aci.resources looks for) with
    exactly these two roles, scoped to the registry and to the deployments container."""
    from amlops.deploy.aci.resources import IDENTITY_SUFFIX
    from amlops.deploy.aci.storage import CONTAINER

    tpl = template()
    ev = evaluator(pipelinePrincipalObjectId=PRINCIPAL)
    identity = one_resource(tpl, "Microsoft.ManagedIdentity/userAssignedIdentities")
    workspace = one_resource(tpl, "Microsoft.MachineLearningServices/workspaces")
    assert ev.value(identity["name"]) == ev.value(workspace["name"]) + IDENTITY_SUFFIX
    identity_id = ev.full_id(identity)
    found = {}
    for raw in resources_of_type(tpl, "Microsoft.Authorization/roleAssignments"):
        assignment = ev.resource(raw)
        if assignment["properties"]["principalId"] == f"principal-of:{identity_id}":
            found[assignment["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]] = (raw, assignment)
    assert set(found) == set(ACI_IDENTITY_ROLES)
    for role, scope_type in ACI_IDENTITY_ROLES.items():
        raw, assignment = found[role]
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        scopes = resources_of_type(tpl, scope_type)
        scope = next(r for r in scopes if len(scopes) == 1 or ev.full_id(r).endswith("/" + CONTAINER))
        assert f"{RG_ID}/providers/{assignment['scope']}" == ev.full_id(scope)
        # deterministic name: guid(scope, identity, role), the same on every run
        call = parse_expression(raw["name"][1:-1])
        expected = [ev.full_id(scope), identity_id, assignment["properties"]["roleDefinitionId"]]
        assert [ev.node(argument) for argument in call[2]] == expected


def test_the_deployments_container_is_private_and_the_key_vault_uses_rbac() -> None:
    from amlops.deploy.aci.storage import CONTAINER

    ev = evaluator()
    containers = {ev.value(raw["name"]).rsplit("/", 1)[-1]: raw
                  for raw in resources_of_type(template(), "Microsoft.Storage/storageAccounts/blobServices/containers")}
    assert containers[CONTAINER]["properties"] == {"publicAccess": "None"}
    vault = one_resource(template(), "Microsoft.KeyVault/vaults")["properties"]
    # the scoring keys are readable only through Key Vault data roles, never through access policies
    assert vault["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vault


def test_iac_pipeline_registers_aci_and_imports_the_gateway_image() -> None:
    """The deploy pulls nothing from Docker Hub: the IaC pipeline imports Caddy into the workspace registry
    under the name the deployer uses, and registers the Container Instances resource provider."""
    from amlops.deploy.aci.group import GATEWAY_REPOSITORY

    scripts = " ".join(" ".join(script_of(step).replace("\\\n", " ").split()) for step in steps())
    assert "az provider register --namespace Microsoft.ContainerInstance --wait" in scripts
    assert (f"az acr import --name $(CONTAINER_REGISTRY_NAME) --source docker.io/library/caddy:2 "
            f"--image {GATEWAY_REPOSITORY} --force") in scripts
