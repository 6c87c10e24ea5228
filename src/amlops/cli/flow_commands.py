"""`amlops run`: the whole flow, with a summary."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from amlops import names
from amlops.cli.echo import untrusted
from amlops.cli.options import checked, use_current_env_option, workspace_options
from amlops.cli.progress import ProgressPrinter
from amlops.flow import Flow, FlowOptions, FlowResult, Stage
from amlops.gate import DEFAULT_MIN_IMPROVEMENT, Gate
from amlops.workspace.entities import MODEL_TYPES
from amlops.pipeline.loader import parse_overrides


@click.command("run")
@click.argument("pipeline_file", type=click.Path(dir_okay=False, path_type=Path),
                default="training/pipeline.yml")
@click.option("--set", "assignments", multiple=True, metavar="inputs.NAME=VALUE",
              help="Override a pipeline input (repeatable).")
@click.option("--model-name", default="safe-driver-model", show_default=True, callback=checked(names.MODEL))
@click.option("--deployment-name", default="safe-driver", show_default=True, callback=checked(names.DEPLOYMENT))
@click.option("--no-evaluation", is_flag=True, help="Register the model without comparing it (RUN_EVALUATION off).")
@click.option("--metric", default="auc", show_default=True, help="The metric the gate compares.")
@click.option("--lower-is-better", is_flag=True, help="For metrics such as log_loss.")
@click.option("--min-improvement", type=float, default=DEFAULT_MIN_IMPROVEMENT, show_default=True,
              help="How much better than the registered version the metric must be (0 for any gain).")
@click.option("--model-type", type=click.Choice(MODEL_TYPES), default="custom_model", show_default=True,
              help="Register the model as this Azure ML asset type (the sample writes an MLflow model: both work).")
@click.option("--teardown", is_flag=True, help="Stop the scoring service after the smoke test.")
@click.option("--no-reuse", is_flag=True, help="Rerun every step even if an earlier run can be reused.")
@use_current_env_option
@click.option("--quiet", is_flag=True, help="Do not show the steps' own output.")
@workspace_options
def run(ws, pipeline_file: Path, assignments: tuple[str, ...], model_name: str, deployment_name: str,
        no_evaluation: bool, metric: str, lower_is_better: bool, min_improvement: float, model_type: str,
        teardown: bool, no_reuse: bool, quiet: bool) -> None:
    """The whole flow on PIPELINE_FILE: publish -> train -> gate and register -> deploy -> smoke test.

    On the local workspace this needs no Azure: it leaves a live scoring service on loopback that
    `amlops deployments delete` stops. Exits 0 only when every stage passed."""
    options = FlowOptions(
        pipeline_file=pipeline_file, overrides=parse_overrides(assignments), model_name=model_name,
        deployment_name=deployment_name, teardown=teardown, reuse=not no_reuse, model_type=model_type,
        gate=Gate(enabled=not no_evaluation, metric=metric, higher_is_better=not lower_is_better,
                  min_improvement=min_improvement))
    printer = ProgressPrinter(quiet_logs=quiet)
    result = Flow(ws, options, on_stage=_show_stage, on_event=printer.on_event).run()
    click.echo(summary(result))
    sys.exit(0 if result.passed else 1)


def _show_stage(stage: Stage, ended: bool) -> None:
    if not ended:
        click.secho(f"==> {stage.name}", bold=True)
        return
    mark = click.style("ok", fg="green") if stage.ok else click.style("FAILED", fg="red")
    click.echo(f"<== {stage.name}: {mark} in {stage.seconds:.1f} s: {untrusted(stage.detail)}")


def summary(result: FlowResult) -> str:
    lines = ["", "summary"]
    if result.run:
        metrics = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in result.run.metrics.items())
        lines.append(f"  run          {result.run.id} ({result.run.status}) {metrics}")
    if result.decision:
        lines.append(f"  model        {result.decision.message}")
    if result.deployment:
        lines.append(f"  scoring URI  {result.deployment.scoring_uri}")
    if result.smoke and result.smoke.latency_ms:
        lines.append("  latency      p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(
            **result.smoke.latency_ms))
    lines.append("  stages       " + ", ".join(f"{s.name} {s.seconds:.1f} s" for s in result.stages))
    total = sum(s.seconds for s in result.stages)
    lines.append(f"  result       {'PASSED' if result.passed else 'FAILED'} in {total:.1f} s")
    if result.deployment and result.passed:
        lines.append(f"  try it       curl -X POST -H 'Content-Type: application/json' "
                     f"-d @training/scoring/sample-request.json {result.deployment.scoring_uri}")
    return "\n".join(lines)


COMMANDS = [run]
