"""The one rule for every name a user gives that becomes a path or an Azure ML resource.

Each rule is Azure ML's own (or, for deployments, Azure Container Instances'), so a name that works in
the local workspace works on Azure and the other way round; the local workspace uses these names as
folder names, so the rules also keep every such folder a single plain path segment ('..', '/', '' and
'.' are never valid). The checks run at the edge (CLI options, `amlops.api`, task inputs), before
anything is opened or written; the local workspace also refuses any path outside its root
(`amlops.workspace.local.paths`), independently of these rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from amlops.errors import AmlopsError

# The `name` path parameter of models, components, data, datastores and jobs (PUT) in the Azure ML REST API,
# Microsoft.MachineLearningServices stable/2024-10-01 mfe.json (../shared/specs/azure/rest-api-specs).
_ASSET = r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$"
ASSET_RULE = "letters, digits, '-' and '_', start with a letter or digit and be at most 255 characters long"
# The same REST API has no pattern for `version`; azure-ai-ml versions are strings such as 1, 2 or 1.0.1
# (its fields.py: "integers concatenated by '.'"); build numbers (20240131.4) fit too.
_VERSION = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$"
# Pipeline job (node) names: azure-ai-ml _utils/utils.py is_valid_node_name, ^[a-z_][a-z\d_]*; the local
# executor uses them as folder names, hence the length bound of a file name.
_NODE = r"^[a-z_][a-z0-9_]{0,254}$"
# Component input and output names: azure-ai-ml constants/_component.py IOConstants.VALID_KEY_PATTERN.
_PORT = r"^[a-zA-Z_][a-zA-Z0-9_]{0,254}$"
# Container group names (AmlDeployAci deploys to Azure Container Instances): 1-63 lowercase letters, digits
# and hyphens, starting and ending with a letter or digit, no '--'.
# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftcontainerinstance
_CONTAINER_GROUP = r"^(?!.*--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

MAX_MODEL_VERSION = 2**63 - 1  # the largest SQLite INTEGER, where the local workspace keeps it
MAX_DATASTORE_PATH = 1024  # Azure Blob Storage: a blob name is at most 1,024 characters


@dataclass(frozen=True)
class NameRule:
    what: str  # "pipeline name"
    pattern: str
    allowed: str  # "may contain only ..."
    example: str
    source: str = "Azure ML's rule"

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


PIPELINE = NameRule("pipeline name", _ASSET, ASSET_RULE, "safe-driver-training")
PIPELINE_VERSION = NameRule("pipeline version", _VERSION, "letters, digits, '-', '_' and '.', start with a "
                            "letter or digit and be at most 255 characters long", "20240131.4")
MODEL = NameRule("model name", _ASSET, ASSET_RULE, "safe-driver-model")
DATASTORE = NameRule("datastore name", _ASSET, ASSET_RULE, "training_data")
EXPERIMENT = NameRule("experiment name", _ASSET, ASSET_RULE, "safe-driver")
RUN = NameRule("run id", _ASSET, ASSET_RULE, "run-20240131T101500-1a2b3c")
OUTPUT = NameRule("output name", _PORT, "letters, digits and '_', start with a letter or '_' and be at most "
                  "255 characters long", "model")
JOB = NameRule("job name", _NODE, "lowercase letters, digits and '_', start with a letter or '_' and be at "
               "most 255 characters long", "train")
DEPLOYMENT = NameRule("deployment name", _CONTAINER_GROUP, "lowercase letters, digits and single hyphens, "
                      "start and end with a letter or digit and be at most 63 characters long", "safe-driver",
                      "the rule of Azure Container Instances, where AmlDeployAci deploys")


class InvalidName(AmlopsError):
    """A name that breaks its rule."""


def check(rule: NameRule, value: str, where: str) -> str:
    """`value` if it follows `rule`, else InvalidName naming `where` (an option, an argument, a task input)."""
    if not isinstance(value, str) or not rule.matches(value):
        raise InvalidName(f"{where} {shown(value)}: a {rule.what} may contain only {rule.allowed} "
                          f"({rule.source}); use for example {rule.example!r}")
    return value


def check_optional(rule: NameRule, value: str | None, where: str) -> str | None:
    return None if value is None else check(rule, value, where)


def model_version(text: str | int, where: str, whole: str | None = None) -> int:
    """A registered model version: a whole number from 1 (as text, or an int); `whole` is what to show when
    the version came inside a larger value (NAME:VERSION)."""
    digits = str(text)
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19 or not 1 <= int(digits) <= MAX_MODEL_VERSION:
        raise InvalidName(f"{where} {shown(whole if whole is not None else digits)}: a model version is a whole "
                          f"number from 1 to {MAX_MODEL_VERSION}; use for example 1, or leave it out for the latest")
    return int(digits)


def model_reference(text: str, where: str) -> tuple[str, int | None]:
    """`name` or `name:version`."""
    name, separator, version = text.partition(":")
    if not MODEL.matches(name):
        raise InvalidName(f"{where} {shown(text)}: expected NAME or NAME:VERSION, where a {MODEL.what} may contain "
                          f"only {MODEL.allowed} (Azure ML's rule); use for example '{MODEL.example}:1'")
    return name, model_version(version, where, whole=text) if separator else None


def datastore_path(text: str, where: str) -> str:
    """A path inside a datastore: relative, '/'-separated, no empty, '.' or '..' segment, no control character."""
    segments = text.split("/")
    bad = (not text or len(text) > MAX_DATASTORE_PATH or "\\" in text
           or any(not s or s in (".", "..") or len(s) > 255 for s in segments)
           or any(ord(c) < 32 or c == "\x7f" for c in text))
    if bad:
        raise InvalidName(f"{where} {shown(text)}: a path in a datastore is relative and '/'-separated, with no "
                          "empty, '.' or '..' part, no '\\' or control character, at most 1024 characters; use "
                          "for example 'porto_seguro/train.csv'")
    return text


def shown(value: object, limit: int = 60) -> str:
    """A value quoted on one line: control characters escaped, long values cut (with their length)."""
    text = str(value)
    quoted = repr(text[:limit])
    return quoted if len(text) <= limit else f"{quoted[:-1]}...{quoted[-1]} ({len(text)} characters)"
