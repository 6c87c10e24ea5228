"""publish, submit, runs, models, datastore: the workspace commands."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from amlops import api, names
from amlops.cli.echo import untrusted
from amlops.cli.options import (checked, datastore_path, key_values, model_reference, parse_tags, positive_seconds,
                                table, use_current_env_option, workspace_options)
from amlops.cli.output import echo_json, model_record, output_option, run_record
from amlops.errors import AmlopsError
from amlops.cli.progress import ProgressPrinter
from amlops.pipeline.loader import parse_overrides
from amlops.workspace.entities import MODEL_TYPES


@click.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False), default="training/pipeline.yml")
@click.option("--name", callback=checked(names.PIPELINE),
              help="Name to publish under [default: from the YAML's display_name].")
@click.option("--version", callback=checked(names.PIPELINE_VERSION),
              help="Version, e.g. a build id [default: the next number].")
@workspace_options
def publish(ws, pipeline_file: str, name: str | None, version: str | None) -> None:
    """Validate PIPELINE_FILE (an Azure ML v2 pipeline job YAML) and snapshot it, with its components,
    code and local inputs, as a named, versioned pipeline that `amlops submit` runs."""
    published = api.publish(ws, pipeline_file, name=name, version=version)
    click.echo(f"published {published.name} version {published.version} ({published.id})")


@click.command()
@click.argument("pipeline", callback=checked(names.PIPELINE))
@click.option("--version", callback=checked(names.PIPELINE_VERSION), help="Pipeline version [default: the latest].")
@click.option("--set", "assignments", multiple=True, metavar="inputs.NAME=VALUE",
              help="Override a pipeline input, e.g. --set inputs.learning_rate=0.05 (repeatable).")
@click.option("--experiment", callback=checked(names.EXPERIMENT),
              help="Experiment name [default: the YAML's experiment_name].")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the run (repeatable).")
@click.option("--timeout", type=float, callback=lambda ctx, param, value: positive_seconds(value, "--timeout"),
              help="Cancel the run after this many seconds.")
@click.option("--no-reuse", is_flag=True, help="Rerun every step even if an earlier run can be reused.")
@use_current_env_option
@workspace_options
def submit(ws, pipeline: str, version: str | None, assignments: tuple[str, ...], experiment: str | None,
           tags: tuple[str, ...], timeout: float | None, no_reuse: bool) -> None:
    """Run the published PIPELINE and wait for it, streaming each step's output."""
    printer = ProgressPrinter()
    run = api.submit(ws, pipeline, version=version, overrides=parse_overrides(assignments),
                     experiment=experiment, tags=parse_tags(tags), timeout_s=timeout, reuse=not no_reuse,
                     on_event=printer.on_event)
    printer.close()
    click.echo(untrusted(describe_run(run)))
    if run.status != "Completed":
        sys.exit(130 if run.status == "Canceled" else 1)


@click.group()
def runs() -> None:
    """List and inspect pipeline runs."""


@runs.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@output_option
@workspace_options
def runs_list(ws, limit: int, output_format: str) -> None:
    """The most recent runs, newest first."""
    found = ws.list_runs(limit)
    if output_format == "json":
        return echo_json([run_record(r) for r in found])
    rows = [[r.id, f"{r.pipeline_name}:{r.pipeline_version}", r.status, r.created_at, _metrics_text(r.metrics)]
            for r in found]
    click.echo(table(rows, ["RUN", "PIPELINE", "STATUS", "CREATED", "METRICS"]) if rows else "no runs yet")


@runs.command("show")
@click.argument("run_id", callback=checked(names.RUN))
@output_option
@workspace_options
def runs_show(ws, run_id: str, output_format: str) -> None:
    """A run's steps with their status, its parameters, outputs and metrics."""
    run = ws.get_run(run_id)
    logged = _mlflow_metrics(ws, run)
    if output_format == "json":
        return echo_json(run_record(run, logged))
    click.echo(untrusted(describe_run(run, verbose=True, mlflow_metrics=logged)))


def _mlflow_metrics(ws, run) -> dict | None:
    """{step: {metric: value}} the steps logged with MLflow (a reused step: what its original run logged);
    None where the backend keeps them elsewhere (Azure ML studio shows them)."""
    if ws.kind != "local":
        return None
    from amlops.workspace.local.tracking import step_metrics

    logged = step_metrics(ws.root, run.id)
    for step in run.steps:
        if step.reused_from and step.name not in logged:
            earlier = step_metrics(ws.root, step.reused_from).get(step.name)
            if earlier:
                logged[step.name] = earlier
    return logged


def describe_run(run, verbose: bool = False, mlflow_metrics: dict | None = None) -> str:
    lines = [f"run {run.id}: {run.status}  (pipeline {run.pipeline_name}:{run.pipeline_version}, "
             f"experiment {run.experiment})"]
    lines += [f"  step {s.name:<16} {s.status:<10}" + (f" reused from {s.reused_from}" if s.reused_from else "")
              for s in run.steps]
    if run.metrics:
        lines.append("  metrics: " + _metrics_text(run.metrics))
    for step, values in (mlflow_metrics or {}).items():
        lines.append(f"  mlflow {step}: " + _metrics_text(values))
    if verbose:
        lines += [f"  input  {k} = {v}" for k, v in run.parameters.items()]
        lines += [f"  output {k} = {v}" for k, v in run.outputs.items()]
        lines += [f"  tag    {k} = {v}" for k, v in run.tags.items()]
        lines += [f"  log    {s.name}: {s.log_path}" for s in run.steps if s.log_path]
    if run.error:
        lines.append(f"  error: {run.error}")
    return "\n".join(lines)


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


@click.group()
def models() -> None:
    """Register and inspect model versions."""


@models.command("register")
@click.argument("name", callback=checked(names.MODEL))
@click.option("--path", "source", type=click.Path(exists=True, path_type=Path), help="Model file or folder.")
@click.option("--run", "run_id", callback=checked(names.RUN),
              help="Register the model output of this run (which must have Completed) instead of --path.")
@click.option("--output", default="model", show_default=True, callback=checked(names.OUTPUT),
              help="The run output holding the model.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the version (repeatable).")
@click.option("--type", "model_type", type=click.Choice(MODEL_TYPES), default="custom_model", show_default=True,
              help="Model asset type; mlflow_model needs an MLflow model folder (an MLmodel file at its root).")
@workspace_options
def models_register(ws, name: str, source: Path | None, run_id: str | None, output: str,
                    tags: tuple[str, ...], model_type: str) -> None:
    """Register a new version of model NAME from a file/folder or a Completed run's output (no gate)."""
    if bool(source) == bool(run_id):
        raise AmlopsError("give exactly one of --path or --run")
    run = ws.get_run(run_id) if run_id else None
    if run is not None and run.status != "Completed":
        raise AmlopsError(f"--run {run.id}: the run ended {run.status}, so its outputs are not a model to register; "
                          "register the output of a Completed run")
    files = ws.run_output(run, output) if run else source
    all_tags = {**({k: str(v) for k, v in run.metrics.items()} if run else {}), **parse_tags(tags)}
    model = ws.register_model(name, files, all_tags, {}, run.id if run else None, model_type=model_type)
    click.echo(f"registered {model.ref}" + (f" ({model_type})" if model_type != "custom_model" else ""))


@models.command("list")
@click.argument("name", required=False, callback=checked(names.MODEL))
@output_option
@workspace_options
def models_list(ws, name: str | None, output_format: str) -> None:
    """Registered model versions (of NAME, or all)."""
    found = ws.list_models(name)
    if output_format == "json":
        return echo_json([model_record(m) for m in found])
    rows = [[m.name, str(m.version), m.type, m.created_at, m.run_id or "", _metrics_text(_numeric_tags(m.tags))]
            for m in found]
    click.echo(table(rows, ["MODEL", "VERSION", "TYPE", "CREATED", "RUN", "METRICS"]) if rows else "no models yet")


@models.command("show")
@click.argument("model", callback=model_reference)
@output_option
@workspace_options
def models_show(ws, model: tuple[str, int | None], output_format: str) -> None:
    """One model version (MODEL is NAME or NAME:VERSION; default the latest)."""
    record = model_record(ws.get_model(*model))
    if output_format == "json":
        return echo_json(record)
    click.echo(key_values(record))


def _numeric_tags(tags: dict) -> dict:
    numeric = {}
    for key, value in tags.items():
        try:
            numeric[key] = float(value)
        except ValueError:
            pass
    return numeric


@click.group()
def datastore() -> None:
    """Datastores: where training data lives (azureml://datastores/<name>/paths/<path>)."""


@datastore.command("upload")
@click.option("--file", "file", required=True, type=click.Path(path_type=Path), help="The file to upload.")
@click.option("--datastore", "datastore_name", default="training_data", show_default=True,
              callback=checked(names.DATASTORE), help="Datastore name (the pipeline variable DATASTORE_NAME).")
@click.option("--path", "target_path", callback=datastore_path,
              help="Path inside the datastore (DATAFILE_NAME) [default: file name].")
@click.option("--container", default="trainingdata", show_default=True, help="Blob container (azure backend).")
@click.option("--storage-account", help="Storage account (azure backend).")
@workspace_options
def datastore_upload(ws, file: Path, datastore_name: str, target_path: str | None, container: str,
                     storage_account: str | None) -> None:
    """Upload a training data file and print the URI the pipeline's training_data input takes."""
    if ws.kind == "local":
        uri = ws.upload_to_datastore(datastore_name, file, target_path)
    else:
        uri = ws.upload_to_datastore(datastore_name, file, target_path, container=container,
                                     storage_account=storage_account)
    click.echo(uri)


@click.command("gc")
@click.option("--keep-runs", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many of the most recent runs to keep.")
@click.option("--keep-versions", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many of the most recent versions of each pipeline to keep.")
@click.option("--dry-run", is_flag=True, help="List what would be removed and freed; remove nothing.")
@workspace_options
def gc(ws, keep_runs: int, keep_versions: int, dry_run: bool) -> None:
    """Free the space of old runs and pipeline versions of the local workspace (refused while a run is
    going). Never removed: the runs registered models came from (and so the models deployments serve), runs
    whose outputs kept runs reuse, pipeline versions kept runs or models name; models and deployments
    themselves."""
    if ws.kind != "local":
        raise AmlopsError("gc cleans the local workspace; on Azure ML use the workspace's own retention settings")
    from amlops.workspace.local import gc as collector

    plan = collector.plan(ws, keep_runs, keep_versions)
    if not dry_run:
        collector.collect(ws, plan)
    click.echo("\n".join(plan.lines(dry_run)))


COMMANDS = [publish, submit, runs, models, datastore, gc]
