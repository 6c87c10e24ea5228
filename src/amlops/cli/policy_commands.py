"""policy apply|show: the branch policies of an Azure Repos branch."""
from __future__ import annotations

import functools
from typing import Callable

import click

from amlops import policy as branch_policies
from amlops.cli.echo import untrusted
from amlops.cli.options import positive_seconds
from amlops.cli.output import echo_json, output_option, policy_record


def _branch_options(command: Callable) -> Callable:
    """--org, --project, --repo, --branch (defaults from the pipeline's variables); passes `branch`."""
    @click.option("--org", "org_url", required=True, envvar="SYSTEM_COLLECTIONURI", show_envvar=True,
                  metavar="URL", help="Organization URL, e.g. https://dev.azure.com/contoso.")
    @click.option("--project", required=True, envvar="SYSTEM_TEAMPROJECT", show_envvar=True,
                  help="Project name.")
    @click.option("--repo", required=True, envvar="BUILD_REPOSITORY_NAME", show_envvar=True,
                  help="Git repository name.")
    @click.option("--branch", default="main", show_default=True,
                  help="Branch name (or full refs/heads/... ref).")
    @click.option("--timeout", "timeout_s", type=float, default=branch_policies.DEFAULT_DEADLINE_S, show_default=True,
                  callback=lambda ctx, param, value: positive_seconds(value, "--timeout"),
                  help="Seconds the whole command may take, however Azure DevOps answers.")
    @functools.wraps(command)
    def wrapper(org_url: str, project: str, repo: str, branch: str, **kwargs):
        return command(branch=branch_policies.Branch.parse(org_url, project, repo, branch), **kwargs)
    return wrapper


@click.group()
def policy() -> None:
    """Branch policies on Azure Repos: build validation, minimum reviewers, comment resolution.

    Authenticates with a personal access token in AZURE_DEVOPS_EXT_PAT or, in a pipeline, the job token
    in SYSTEM_ACCESSTOKEN.
    """


@policy.command("apply")
@_branch_options
@click.option("--build-pipeline", required=True, metavar="NAME",
              help="The pipeline whose build must pass before merging (its name, or its numeric id).")
@click.option("--min-reviewers", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Approvals a pull request needs; the author's own vote does not count.")
@click.option("--dry-run", is_flag=True, help="Print what would change and change nothing.")
def policy_apply(branch: branch_policies.Branch, build_pipeline: str, min_reviewers: int,
                 dry_run: bool, timeout_s: float) -> None:
    """Ensure, on exactly that branch, a blocking build validation with the pipeline that expires as soon as
    the branch moves, a minimum number of reviewers (votes reset on push) and required comment resolution.

    Idempotent: creates what is missing, updates what differs, leaves the rest; one line per policy.
    """
    branch_policies.apply_branch_policies(branch, build_pipeline, min_reviewers, dry_run,
                                          report=lambda line: click.echo(untrusted(line)), timeout_s=timeout_s)
    if dry_run:
        click.echo("dry run: nothing was changed")


@policy.command("show")
@output_option
@_branch_options
def policy_show(branch: branch_policies.Branch, timeout_s: float, output_format: str) -> None:
    """List every policy that applies to the branch: type, blocking, enabled and key settings."""
    repository_id, found = branch_policies.show_branch_policies(branch, timeout_s=timeout_s)
    if output_format == "json":
        return echo_json({"repository_id": repository_id, "policies": [policy_record(item) for item in found]})
    where = f"{branch.ref_name} of {branch.project}/{branch.repo}"
    if not found:
        click.echo(f"no policies apply to {where}")
        return
    click.echo(f"{len(found)} {'policy applies' if len(found) == 1 else 'policies apply'} to {where}:")
    for item in found:
        click.echo(untrusted("  " + branch_policies.describe(item, repository_id)))


COMMANDS = [policy]
