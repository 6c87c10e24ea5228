"""Find every secret the agent handed this task, and keep them out of logs and child processes.

The agent passes secrets as environment variables: service connection credentials
(`ENDPOINT_AUTH_<id>` JSON and `ENDPOINT_AUTH_PARAMETER_<id>_<KEY>`, the job token among them under
`SYSTEMVSSCONNECTION`), secret pipeline variables (`SECRET_<NAME>`), `SYSTEM_ACCESSTOKEN` when mapped,
and inputs that carry a secret (a scoring key). All are masked before anything is printed and removed
from `os.environ`, so the training steps and the scoring server this task starts never inherit them.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping

from amlops.secret_masking import secret_forms

# Authorization parameters that identify rather than authenticate (the agent does not mask these either).
NON_SECRET_AUTH_PARAMETERS = frozenset({
    "TENANTID", "SERVICEPRINCIPALID", "AUTHENTICATIONTYPE", "SCOPE", "ROLE",
    "WORKLOADIDENTITYFEDERATIONSUBJECT", "WORKLOADIDENTITYFEDERATIONISSUER",
    "WORKLOADIDENTITYFEDERATIONISSUERTYPE", "ISSUER", "AUDIENCE", "USERNAME",
})
_SECRET_PREFIXES = ("ENDPOINT_AUTH_", "SECRET_")
# The agent's proxy password arrives as SECRET_AGENT_PROXYPASSWORD; the launcher may also map it here.
_SECRET_NAMES = frozenset({"SYSTEM_ACCESSTOKEN", "AGENT_PROXYPASSWORD"})


def is_secret_variable(name: str) -> bool:
    """True for an environment variable that may hold a secret (whatever its value)."""
    upper = name.upper()
    return upper.startswith(_SECRET_PREFIXES) or upper in _SECRET_NAMES


def input_variable(name: str) -> str:
    """The environment variable the agent uses for a task input (VarUtil.ConvertToEnvVariableFormat)."""
    return "INPUT_" + name.replace(".", "_").replace(" ", "_").upper()


def collect(env: Mapping[str, str], secret_inputs: Iterable[str] = ()) -> list[str]:
    """Every secret value in the environment, longest first."""
    found: list[str] = []
    input_vars = {input_variable(name) for name in secret_inputs}
    for key, value in env.items():
        upper = key.upper()
        if upper.startswith("ENDPOINT_AUTH_PARAMETER_"):
            if upper.rsplit("_", 1)[-1] not in NON_SECRET_AUTH_PARAMETERS:
                found.append(value)
        elif upper.startswith("ENDPOINT_AUTH_") and not upper.startswith("ENDPOINT_AUTH_SCHEME_"):
            found += _json_auth_secrets(value)
        elif upper.startswith("SECRET_") or upper in _SECRET_NAMES or upper in input_vars:
            found.append(value)
    unique = {value for value in found if value and value.strip()}
    return sorted(unique, key=len, reverse=True)


def _json_auth_secrets(text: str) -> list[str]:
    """Secret parameters inside an `ENDPOINT_AUTH_<id>` JSON object ({"parameters": {...}, "scheme": ...})."""
    try:
        parameters = (json.loads(text) or {}).get("parameters") or {}
    except (ValueError, AttributeError):
        return [text]
    if not isinstance(parameters, dict):
        return [text]
    return [str(value) for key, value in parameters.items()
            if value and str(key).upper() not in NON_SECRET_AUTH_PARAMETERS]


def scrub(env: MutableMapping[str, str], secrets: Iterable[str], secret_inputs: Iterable[str] = ()) -> list[str]:
    """Remove secret-bearing variables from env (os.environ): by name, and any whose value holds a secret in
    any encoding amlops.secret_masking knows (raw, URL/form, JSON, base64).

    Returns the names removed (never the values).
    """
    input_vars = {input_variable(name) for name in secret_inputs}
    values = [form for value in secrets if len(value) >= 8 for form in secret_forms(value) if len(form) >= 8]
    removed = []
    for key in list(env):
        upper = key.upper()
        by_name = upper.startswith(_SECRET_PREFIXES) or upper in _SECRET_NAMES or upper in input_vars
        if by_name or any(value in env[key] for value in values):
            del env[key]
            removed.append(key)
    return removed
