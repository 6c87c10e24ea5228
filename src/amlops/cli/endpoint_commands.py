"""`deploy --target online-endpoint` and `endpoints list/show/traffic/rollback/delete`: online endpoints with a
blue/green rollout, locally (inference servers behind Caddy) or on Azure ML."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

import click

from amlops import api
from amlops.cli.options import table, workspace_options
from amlops.deploy.online_endpoint.rollout import parse_traffic_steps
from amlops.errors import AmlopsError
from amlops.smoke import parse_expected


def endpoint_options(command: Callable) -> Callable:
    """The options `deploy` takes for --target online-endpoint."""
    @click.option("--endpoint", "endpoint_name", help="Online endpoint (created when missing); with "
                  "--target online-endpoint, --name is the new deployment's name.")
    @click.option("--instance-type", default="Standard_DS3_v2", show_default=True, help="VM size (Azure).")
    @click.option("--instance-count", type=int, default=1, show_default=True, help="Instances (Azure).")
    @click.option("--traffic-steps", default="100", show_default=True,
                  help="Traffic percentages for the new deployment, checked after each, e.g. 10,50,100.")
    @click.option("--mirror-percent", type=int, default=0, show_default=True,
                  help="Mirror this share of live traffic to the new deployment first (Azure; at most 50).")
    @click.option("--delete-previous", is_flag=True, help="Delete the deployments that served before, on success.")
    @click.option("--auth-mode", type=click.Choice(["key", "aml_token", "aad_token"]), default="key",
                  show_default=True, help="Authentication of a new endpoint (tokens: Azure only).")
    @click.option("--request-file", type=click.Path(dir_okay=False, path_type=Path),
                  default="training/scoring/sample-request.json", show_default=True,
                  help="Smoke-test request sent to the new deployment and after each traffic step.")
    @click.option("--expected", help="Expected predictions as a JSON list, e.g. '[0.03, 0.01]'.")
    @functools.wraps(command)
    def wrapper(**kwargs):
        return command(**kwargs)
    return wrapper


def deploy_to_endpoint(ws, model_name: str, version: int | None, deployment_name: str, scoring_folder: Path,
                       entry_script: str, endpoint_name: str | None, instance_type: str, instance_count: int,
                       traffic_steps: str, mirror_percent: int, delete_previous: bool, auth_mode: str,
                       request_file: Path, expected: str | None) -> None:
    if not endpoint_name:
        raise click.UsageError("--target online-endpoint needs --endpoint NAME")
    result = api.deploy_online_endpoint(
        ws, endpoint_name=endpoint_name, deployment_name=deployment_name, model_name=model_name,
        model_version=version, scoring_folder=scoring_folder, request_file=request_file, entry_script=entry_script,
        instance_type=instance_type, instance_count=instance_count, traffic_steps=parse_traffic_steps(traffic_steps),
        mirror_percent=mirror_percent, delete_previous=delete_previous, auth_mode=auth_mode,
        expected=parse_expected(expected), on_info=click.echo)
    click.echo(f"endpoint {result.endpoint}: {_traffic(result.traffic)}; scoring URI {result.scoring_uri}")
    if result.deleted:
        click.echo(f"deleted the previous deployment(s) {', '.join(result.deleted)}")


@click.group()
def endpoints() -> None:
    """Online endpoints: list, inspect, move traffic, roll back, delete."""


@endpoints.command("list")
@workspace_options
def endpoints_list(ws) -> None:
    """Every online endpoint with its traffic."""
    rows = [[e.name, e.status, _traffic(e.traffic), e.scoring_uri] for e in api.online_endpoints(ws).list()]
    click.echo(table(rows, ["NAME", "STATUS", "TRAFFIC", "SCORING URI"]) if rows else "no online endpoints")


@endpoints.command("show")
@click.argument("name")
@workspace_options
def endpoints_show(ws, name: str) -> None:
    """One endpoint and its deployments (status checked now); exits 1 if a deployment is not healthy."""
    endpoint = _get(ws, name)
    for key, value in (("name", endpoint.name), ("status", endpoint.status), ("auth", endpoint.auth_mode),
                       ("scoring_uri", endpoint.scoring_uri), ("traffic", _traffic(endpoint.traffic)),
                       ("mirror", _traffic(endpoint.mirror_traffic) or "none")):
        click.echo(f"{key:<12} {value}")
    rows = [[d.name, d.model, d.status, str(endpoint.traffic.get(d.name, 0)), d.instance_type, str(d.instance_count)]
            for d in endpoint.deployments]
    if rows:
        click.echo(table(rows, ["DEPLOYMENT", "MODEL", "STATUS", "TRAFFIC %", "INSTANCE TYPE", "COUNT"]))
    if any(d.status not in ("Healthy", "Succeeded") for d in endpoint.deployments):
        sys.exit(1)


@endpoints.command("traffic")
@click.argument("name")
@click.argument("shares", nargs=-1, required=True)
@workspace_options
def endpoints_traffic(ws, name: str, shares: tuple[str, ...]) -> None:
    """Set the traffic: SHARES as DEPLOYMENT=PERCENT ..., adding up to 100 (e.g. blue=90 green=10)."""
    traffic = {}
    for share in shares:
        deployment, _, percent = share.partition("=")
        if not percent.isdigit():
            raise click.BadParameter(f"{share!r}: expected DEPLOYMENT=PERCENT", param_hint="SHARES")
        traffic[deployment] = int(percent)
    endpoint = api.online_endpoints(ws).set_traffic(name, traffic)
    click.echo(f"endpoint {endpoint.name}: {_traffic(endpoint.traffic)}")


@endpoints.command("rollback")
@click.argument("name")
@click.option("--to", "to", help="Deployment to give all traffic to [default: the one other deployment].")
@workspace_options
def endpoints_rollback(ws, name: str, to: str | None) -> None:
    """Give all traffic back to the previous deployment."""
    endpoint = api.rollback_online_endpoint(ws, name, to)
    click.echo(f"endpoint {endpoint.name}: {_traffic(endpoint.traffic)}")


@endpoints.command("delete")
@click.argument("name")
@click.option("--deployment", help="Delete only this deployment (it must have no traffic).")
@workspace_options
def endpoints_delete(ws, name: str, deployment: str | None) -> None:
    """Delete an endpoint with all its deployments, or one deployment."""
    backend = api.online_endpoints(ws)
    _get(ws, name)
    if deployment:
        backend.delete_deployment(name, deployment)
        click.echo(f"deleted deployment {deployment} of endpoint {name}")
        return
    backend.delete(name)
    click.echo(f"deleted endpoint {name}")


def _get(ws, name: str):
    endpoint = api.online_endpoints(ws).get(name)
    if endpoint is None:
        raise AmlopsError(f"online endpoint {name} not found; `amlops endpoints list` shows them")
    return endpoint


def _traffic(traffic: dict[str, int]) -> str:
    return ", ".join(f"{name} {percent}%" for name, percent in sorted(traffic.items()) if percent)


COMMANDS = [endpoints]
