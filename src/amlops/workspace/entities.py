"""The small immutable records every Workspace adapter returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding", "Paused"})
MODEL_TYPES = ("custom_model", "mlflow_model")  # the Azure ML model asset types amlops registers


@dataclass(frozen=True)
class PublishedPipeline:
    name: str
    version: str
    id: str
    source: str
    created_at: str
    snapshot: Path | None = None


@dataclass(frozen=True)
class StepRun:
    name: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    reused_from: str | None = None
    log_path: Path | None = None


@dataclass(frozen=True)
class Run:
    id: str
    pipeline_name: str
    pipeline_version: str
    experiment: str
    status: str
    created_at: str
    ended_at: str | None = None
    parameters: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    steps: tuple[StepRun, ...] = ()
    outputs: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    tags: dict = field(default_factory=dict)
    properties: dict = field(default_factory=dict)
    run_id: str | None = None
    created_at: str = ""
    type: str = "custom_model"  # or mlflow_model (Azure ML's model asset types)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Deployment:
    name: str
    model_name: str
    model_version: int
    scoring_uri: str
    status: str
    created_at: str
    pid: int | None = None
    log_path: Path | None = None
    error: str | None = None
    key: str | None = field(default=None, repr=False)  # the scoring key (ACI); a secret, never printed
