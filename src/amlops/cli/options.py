"""Options shared by the commands, and how they open a workspace."""
from __future__ import annotations

import functools
import math
import os
from typing import Callable

import click

from amlops import api, names
from amlops.pipeline.environments import USE_CURRENT_ENV
from amlops.workspace import Workspace


def workspace_options(command: Callable) -> Callable:
    """--backend, --workspace (local) and the Azure ML workspace identifiers; passes `ws` to the command."""
    @click.option("--backend", type=click.Choice(["local", "azure"]), default="local", show_default=True,
                  envvar="AMLOPS_BACKEND", help="Where to work: the embedded local workspace or Azure ML.")
    @click.option("--workspace", "workspace_path", type=click.Path(file_okay=False), envvar="AMLOPS_WORKSPACE",
                  help="Local workspace folder [default: $AMLOPS_WORKSPACE, else the nearest .amlops in this "
                  "folder or a parent up to the repository root, else .amlops at the repository root].")
    @click.option("--subscription-id", envvar="AZURE_SUBSCRIPTION_ID", help="Azure subscription (azure backend).")
    @click.option("--resource-group", envvar="AZURE_RESOURCE_GROUP", help="Resource group (azure backend).")
    @click.option("--workspace-name", envvar="AZUREML_WORKSPACE_NAME", help="Azure ML workspace (azure backend).")
    @click.option("--cloud", envvar="AZURE_CLOUD", help="AzureCloud (default), AzureChinaCloud or AzureUSGovernment.")
    @click.option("--tenant-id", help="Service principal tenant; with --client-id, the secret is read from "
                  "AZURE_CLIENT_SECRET. Without them: DefaultAzureCredential (environment, managed identity, "
                  "az login).")
    @click.option("--client-id", help="Service principal application (client) id.")
    @functools.wraps(command)
    def wrapper(backend: str, workspace_path: str | None, subscription_id: str | None, resource_group: str | None,
                workspace_name: str | None, cloud: str | None, tenant_id: str | None, client_id: str | None,
                **kwargs):
        principal = {}
        if tenant_id or client_id:
            principal = {"tenant_id": tenant_id, "client_id": client_id,
                         "client_secret": os.environ.get("AZURE_CLIENT_SECRET")}
        ws = api.open_workspace(backend, local_path=workspace_path, subscription_id=subscription_id,
                                resource_group=resource_group, workspace_name=workspace_name, cloud=cloud,
                                **principal)
        return command(ws=ws, **kwargs)
    return wrapper


def use_current_env_option(command: Callable) -> Callable:
    """--use-current-env: run the steps in this Python instead of their component's environment."""
    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            os.environ[USE_CURRENT_ENV] = "1"  # read by the executor, also in the steps' own processes

    return click.option("--use-current-env", is_flag=True, expose_value=False, callback=remember,
                        help="Run the steps in this Python instead of an environment built from their "
                             "component's conda file (faster, but a package missing there is not caught).")(command)


def parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


def checked(rule: names.NameRule) -> Callable:
    """A click callback holding an option or argument to its name rule while the command line is parsed, so a
    bad name is one line and the workspace is neither opened nor written."""
    def callback(ctx: click.Context, param: click.Parameter, value):
        if value is None:
            return value
        return names.check(rule, value, _where(param))
    return callback


def model_reference(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int | None] | None:
    """A click callback: MODEL as `name` or `name:version` -> (name, version or None)."""
    return None if value is None else names.model_reference(value, _where(param))


def datastore_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else names.datastore_path(value, _where(param))


def _where(param: click.Parameter) -> str:
    return param.human_readable_name if isinstance(param, click.Argument) else max(param.opts, key=len)


def positive_seconds(value: float | None, option: str) -> float | None:
    """A duration option: None, or a finite number above 0 (0, nan, inf and negatives are refused)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value:g} is not a positive number of seconds; give e.g. 3600", param_hint=option)
    return value


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def key_values(record: dict) -> str:
    """A record as aligned `key  value` lines; nested mappings one `key.name  value` line per entry."""
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines += [f"{key}.{name}  {item}" for name, item in value.items()]
        else:
            lines.append(f"{key}  {'' if value is None else value}")
    width = max((len(line.split("  ", 1)[0]) for line in lines), default=0)
    return "\n".join(f"{head:<{width}}  {tail}".rstrip() for head, _, tail in (line.partition("  ") for line in lines))


__all__ = ["workspace_options", "parse_tags", "checked", "model_reference", "datastore_path", "positive_seconds",
           "table", "key_values", "Workspace"]
