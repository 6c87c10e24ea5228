"""The whole flow used by `amlops run`: publish -> run -> gate and register -> deploy -> smoke test."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from amlops import api
from amlops.errors import AmlopsError
from amlops.gate import Gate, GateDecision
from amlops.smoke import SmokeReport
from amlops.workspace.entities import Deployment, Run

STAGES = ("publish", "train", "register", "deploy", "smoke test")


@dataclass(frozen=True)
class FlowOptions:
    pipeline_file: Path = Path("training/pipeline.yml")
    overrides: dict = field(default_factory=dict)
    model_name: str = "safe-driver-model"
    deployment_name: str = "safe-driver"
    gate: Gate = Gate()
    scoring_folder: Path | None = None
    request_file: Path | None = None
    smoke_requests: int = 20
    teardown: bool = False
    reuse: bool = True
    model_type: str = "custom_model"


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""


@dataclass
class FlowResult:
    stages: list[Stage] = field(default_factory=list)
    run: Run | None = None
    decision: GateDecision | None = None
    deployment: Deployment | None = None
    smoke: SmokeReport | None = None

    @property
    def passed(self) -> bool:
        return len(self.stages) == len(STAGES) and all(stage.ok for stage in self.stages)


class Flow:
    """Runs the stages in order and stops at the first that fails; `on_stage(stage)` is called as each
    starts (ok, detail empty) and ends."""

    def __init__(self, ws, options: FlowOptions, on_stage: Callable[[Stage, bool], None],
                 on_event: Callable[[str, str, str], None] | None = None):
        self.ws = ws
        self.options = options
        self.on_stage = on_stage
        self.on_event = on_event
        self.result = FlowResult()
        folder = options.scoring_folder or options.pipeline_file.parent / "scoring"
        self.scoring_folder = folder
        self.request_file = options.request_file or folder / "sample-request.json"

    def run(self) -> FlowResult:
        try:
            with self._stage("publish") as stage:
                published = api.publish(self.ws, self.options.pipeline_file)
                stage.detail = f"{published.name}:{published.version}"
            with self._stage("train") as stage:
                self._train(stage, published.name, published.version)
            with self._stage("register") as stage:
                self._register(stage)
            with self._stage("deploy") as stage:
                self._deploy(stage)
            with self._stage("smoke test") as stage:
                self._smoke(stage)
        except _StageFailed:
            pass
        return self.result

    @contextmanager
    def _stage(self, name: str) -> Iterator[Stage]:
        stage = Stage(name)
        self.result.stages.append(stage)
        self.on_stage(stage, False)
        started = time.monotonic()
        try:
            yield stage
        except AmlopsError as error:
            stage.ok, stage.detail = False, str(error)
        stage.seconds = time.monotonic() - started
        self.on_stage(stage, True)
        if not stage.ok:
            raise _StageFailed()

    def _train(self, stage: Stage, name: str, version: str) -> None:
        run = api.submit(self.ws, name, version=version, overrides=self.options.overrides,
                         reuse=self.options.reuse, on_event=self.on_event)
        self.result.run = run
        stage.ok = run.status == "Completed"
        metric = run.metrics.get(self.options.gate.metric)
        stage.detail = f"run {run.id} {run.status}" + (f", {self.options.gate.metric} {metric:.4f}"
                                                       if isinstance(metric, (int, float)) else "")
        if run.error:
            stage.detail += f": {run.error}"

    def _register(self, stage: Stage) -> None:
        decision = api.register_if_better(self.ws, self.result.run, model_name=self.options.model_name,
                                          gate=self.options.gate, model_type=self.options.model_type)
        self.result.decision = decision
        stage.detail = decision.message

    def _deploy(self, stage: Stage) -> None:
        model = self.ws.get_model(self.options.model_name)
        current = self._serving(model.version)
        if current is not None:
            self.result.deployment = current
            stage.detail = f"{current.name} already serves {model.ref} at {current.scoring_uri}"
            return
        deployment = api.deploy(self.ws, model_name=model.name, model_version=model.version,
                                deployment_name=self.options.deployment_name, scoring_folder=self.scoring_folder)
        self.result.deployment = deployment
        stage.detail = f"{deployment.name} serves {model.ref} at {deployment.scoring_uri}"

    def _serving(self, version: int) -> Deployment | None:
        if self.ws.kind != "local":
            return None
        from amlops.deploy.local.target import refresh

        existing = self.ws.find_deployment(self.options.deployment_name)
        if existing and existing.model_version == version and refresh(self.ws, existing).status == "Healthy":
            return existing
        return None

    def _smoke(self, stage: Stage) -> None:
        report = api.smoke_test(self.result.deployment.scoring_uri, request_file=self.request_file,
                                count=self.options.smoke_requests, readiness_timeout_s=60)
        self.result.smoke = report
        stage.ok = report.passed
        stage.detail = report.message if not report.passed else \
            "p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(**report.latency_ms)
        if self.options.teardown and self.ws.kind == "local":
            from amlops.deploy.local.target import delete_local

            delete_local(self.ws, self.result.deployment.name)
            stage.detail += "; service stopped (--teardown)"


class _StageFailed(Exception):
    pass
