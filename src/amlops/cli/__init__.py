"""The `amlops` command line: thin click commands that parse, call the Python API and print."""
from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from amlops import __version__
from amlops.errors import AmlopsError


# Each command's module, imported only when the command runs (or for --help): `amlops submit` need not
# import the deploy and endpoint code. tests/test_cli_errors.py checks this map against every COMMANDS list.
COMMAND_MODULES = {
    "run": "flow_commands",
    "publish": "workspace_commands", "submit": "workspace_commands", "runs": "workspace_commands",
    "models": "workspace_commands", "datastore": "workspace_commands", "gc": "workspace_commands",
    "deploy": "deploy_commands", "deployments": "deploy_commands", "smoke-test": "deploy_commands",
    "endpoints": "endpoint_commands", "policy": "policy_commands", "package": "package_commands",
}


class _Main(click.Group):
    """Turns AmlopsError into one line on stderr and exit code 1, and anything unexpected into one line
    naming it; --debug shows the traceback. Secrets are masked in both. Loads commands lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMAND_MODULES:
            module = importlib.import_module(f"amlops.cli.{COMMAND_MODULES[name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(name)

    def invoke(self, ctx: click.Context):
        from amlops.cli.echo import untrusted

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except AmlopsError as error:
            if ctx.obj and ctx.obj.get("debug"):
                click.echo(untrusted(traceback.format_exc()), err=True)
            click.secho(untrusted(f"error: {error}"), fg="red", err=True)
            sys.exit(1)
        except Exception as error:  # noqa: B902 - a bug, or a library's error we did not foresee
            if ctx.obj and ctx.obj.get("debug"):
                click.echo(untrusted(traceback.format_exc()), err=True)
            first = (str(error).strip().splitlines() or [""])[0]
            click.secho(untrusted(f"error: unexpected {type(error).__name__}: {first}" + (
                "" if ctx.obj and ctx.obj.get("debug") else " (run with --debug for the traceback)")),
                fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amlops")
@click.option("--debug", is_flag=True, envvar="AMLOPS_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Publish and run Azure ML training pipelines, gate, register, deploy and smoke-test
    the model: on Azure, or on this machine with the embedded local workspace (no Azure needed).

    Start with `amlops run`, which does the whole flow on the sample project.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or os.environ.get("SYSTEM_DEBUG", "").lower() == "true"
