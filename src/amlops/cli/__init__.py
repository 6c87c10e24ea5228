"""The `amlops` command line: thin click commands that parse, call the Python API and print."""
from __future__ import annotations

import os
import sys
import traceback

import click

from amlops import __version__
from amlops.errors import AmlopsError


class _Main(click.Group):
    """Turns AmlopsError into one line on stderr and exit code 1, and anything unexpected into one line
    naming it; --debug shows the traceback. Secrets are masked in both."""

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


def _register_commands() -> None:
    from amlops.cli import (
        deploy_commands, endpoint_commands, flow_commands, package_commands, policy_commands, workspace_commands,
    )

    for module in (flow_commands, workspace_commands, deploy_commands, endpoint_commands, policy_commands,
                   package_commands):
        for command in module.COMMANDS:
            main.add_command(command)


_register_commands()
