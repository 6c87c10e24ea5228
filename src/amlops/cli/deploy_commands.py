"""deploy, deployments, smoke-test: serving a registered model and checking it answers."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from amlops import api, names
from amlops.cli.echo import untrusted
from amlops.cli.endpoint_commands import deploy_to_endpoint, endpoint_options
from amlops.cli.options import checked, key_values, model_reference, table, workspace_options
from amlops.cli.output import deployment_record, echo_json, output_option
from amlops.errors import AmlopsError
from amlops.secret_masking import register as register_secret
from amlops.smoke import parse_expected


@click.command()
@click.argument("model", callback=model_reference)
@click.option("--name", "deployment_name", required=True, callback=checked(names.DEPLOYMENT),
              help="Deployment name; redeploying a name switches it to the new model version.")
@click.option("--scoring-folder", type=click.Path(file_okay=False, path_type=Path), default="training/scoring",
              show_default=True, help="Folder with the entry script and its requirements.txt.")
@click.option("--entry-script", default="score.py", show_default=True)
@click.option("--target", type=click.Choice(["service", "online-endpoint"]), default="service", show_default=True,
              help="service: one scoring service (local server, or ACI on azure); online-endpoint: a new "
              "deployment of an online endpoint, smoke-tested, then given the traffic (blue/green).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Local server: gunicorn worker processes (default: one per core).")
@endpoint_options
@workspace_options
def deploy(ws, model: tuple[str, int | None], deployment_name: str, scoring_folder: Path, entry_script: str,
           target: str, workers: int | None, **endpoint) -> None:
    """Serve MODEL (NAME or NAME:VERSION, default the latest) with the Azure ML inference server."""
    name, version = model
    if target == "online-endpoint":
        deploy_to_endpoint(ws, name, version, deployment_name, scoring_folder, entry_script, **endpoint)
        return
    deployment = api.deploy(ws, model_name=name, model_version=version, deployment_name=deployment_name,
                            scoring_folder=scoring_folder, entry_script=entry_script, workers=workers)
    click.echo(f"deployed {deployment.model_name}:{deployment.model_version} as {deployment.name}: "
               f"{deployment.scoring_uri}")


@click.group()
def deployments() -> None:
    """List, inspect and delete deployments."""


def _local(ws):
    if ws.kind != "local":
        raise AmlopsError("server logs are only kept for local deployments; for ACI use "
                          "`az container logs --resource-group <group> --name <deployment>`")
    from amlops.deploy.local import target as local

    return local


def _current(ws, name: str):
    """A deployment with its live status: the local server checked now, or the ACI group read now."""
    if ws.kind == "local":
        from amlops.deploy.local.target import refresh

        return refresh(ws, ws.get_deployment(name))
    from amlops.deploy.aci.target import get_aci

    return get_aci(ws, name)


def _all(ws) -> list:
    if ws.kind == "local":
        from amlops.deploy.local.target import refresh

        return [refresh(ws, d) for d in ws.list_deployments()]
    from amlops.deploy.aci.target import list_aci

    return list_aci(ws)


@deployments.command("list")
@output_option
@workspace_options
def deployments_list(ws, output_format: str) -> None:
    """Every deployment with its live status (checked now, not remembered)."""
    found = _all(ws)
    if output_format == "json":
        return echo_json([deployment_record(d) for d in found])
    rows = [[d.name, f"{d.model_name}:{d.model_version}", d.status, d.scoring_uri, str(d.pid or "")]
            for d in found]
    click.echo(table(rows, ["NAME", "MODEL", "STATUS", "SCORING URI", "PID"]) if rows else "no deployments")


@deployments.command("show")
@click.argument("name", callback=checked(names.DEPLOYMENT))
@output_option
@workspace_options
def deployments_show(ws, name: str, output_format: str) -> None:
    """One deployment; exits 1 if it is not healthy."""
    deployment = _current(ws, name)
    record = deployment_record(deployment)
    echo_json(record) if output_format == "json" else click.echo(key_values(record))
    if deployment.status != "Healthy":
        sys.exit(1)


@deployments.command("logs")
@click.argument("name", callback=checked(names.DEPLOYMENT))
@click.option("--tail", type=click.IntRange(min=0), default=50, show_default=True, help="How many lines.")
@workspace_options
def deployments_logs(ws, name: str, tail: int) -> None:
    """The end of a deployment's server log."""
    _local(ws)
    deployment = ws.get_deployment(name)
    try:
        lines = deployment.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, AttributeError):
        raise AmlopsError(f"deployment {name} has no server log ({deployment.log_path} is missing); "
                          f"redeploy it with `amlops deploy <model> --name {name}`") from None
    click.echo(untrusted("\n".join(lines[len(lines) - tail:] if tail else [])))


@deployments.command("delete")
@click.argument("name", callback=checked(names.DEPLOYMENT))
@workspace_options
def deployments_delete(ws, name: str) -> None:
    """Stop the service (the local server, or the ACI container group) and forget the deployment."""
    if ws.kind == "local":
        deployment = _local(ws).delete_local(ws, name)
        click.echo(f"deleted {deployment.name} (stopped pid {deployment.pid})")
        return
    from amlops.deploy.aci.target import delete_aci

    click.echo(f"deleted {delete_aci(ws, name).name}")


@click.command("smoke-test")
@click.argument("scoring_uri")
@click.option("--request-file", type=click.Path(dir_okay=False, path_type=Path),
              default="training/scoring/sample-request.json", show_default=True)
@click.option("--key", envvar="AMLOPS_SCORING_KEY", help="Bearer key [env AMLOPS_SCORING_KEY]; never printed.")
@click.option("--expected", help="Expected predictions as a JSON list, e.g. '[0.03, 0.01]'.")
@click.option("--tolerance", type=float, default=0.01, show_default=True)
@click.option("--requests", "count", type=int, default=20, show_default=True, help="Requests for latency.")
@click.option("--latency-budget-ms", type=float, help="Fail if p95 latency is above this.")
@click.option("--timeout", "readiness_timeout_s", type=float, default=300, show_default=True,
              help="Seconds to wait for the service to answer.")
def smoke_test(scoring_uri: str, request_file: Path, key: str | None, expected: str | None, tolerance: float,
               count: int, latency_budget_ms: float | None, readiness_timeout_s: float) -> None:
    """Call SCORING_URI (any Azure ML scoring endpoint) with sample requests and check the answers."""
    register_secret(key)
    report = api.smoke_test(scoring_uri, request_file=request_file, key=key, expected=parse_expected(expected),
                            tolerance=tolerance, count=count, latency_budget_ms=latency_budget_ms,
                            readiness_timeout_s=readiness_timeout_s)
    click.echo(untrusted(report.text()))
    if not report.passed:
        sys.exit(1)


COMMANDS = [deploy, deployments, smoke_test]
