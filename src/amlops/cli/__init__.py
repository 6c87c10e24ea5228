"""The `amlops` command line: thin click commands that parse, call the Python API and print."""
from __future__ import annotations

import os
import sys
import traceback

import click

from amlops import __version__
from amlops.errors import AmlopsError


class _Main(click.Group):
    """Turns AmlopsError into one line on stderr and exit code 1; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AmlopsError as error:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.secho(f"error: {error}", fg="red", err=True)
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


def _register_commands() -> None:
    from amlops.cli import (
        deploy_commands, endpoint_commands, flow_commands, package_commands, policy_commands, workspace_commands,
    )

    for module in (flow_commands, workspace_commands, deploy_commands, endpoint_commands, policy_commands,
                   package_commands):
        for command in module.COMMANDS:
            main.add_command(command)


_register_commands()
