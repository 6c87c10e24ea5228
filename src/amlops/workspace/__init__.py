"""The Workspace port: what the flow needs from an Azure ML workspace, local or on Azure."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from amlops.workspace.entities import Deployment, ModelVersion, PublishedPipeline, Run

ProgressCallback = Callable[[str, str, str], None]
"""on_event(kind, step, text): kind is 'status' (text = new status), 'log' (a line of output), 'info' or
'warning' (e.g. a step environment that cannot be built locally)."""


class Workspace(Protocol):
    kind: str

    def publish_pipeline(self, pipeline_file: Path, name: str | None = None,
                         version: str | None = None) -> PublishedPipeline: ...

    def get_pipeline(self, name: str, version: str | None = None) -> PublishedPipeline: ...

    def list_pipelines(self) -> list[PublishedPipeline]: ...

    def submit_run(self, pipeline: PublishedPipeline, overrides: dict[str, str], experiment: str | None,
                   tags: dict[str, str], timeout_s: float | None, reuse: bool,
                   on_event: ProgressCallback | None, wait: bool = True) -> Run:
        """Run a published pipeline; with wait=False return once it is submitted (where the workspace can)."""

    def get_run(self, run_id: str) -> Run: ...

    def list_runs(self, limit: int = 20) -> list[Run]: ...

    def run_output(self, run: Run, output: str) -> Path: ...

    def run_metrics(self, run: Run, output: str) -> dict:
        """The JSON object of metrics a completed run wrote into `output` (a pipeline output)."""

    def register_model(self, name: str, source: Path, tags: dict[str, str], properties: dict[str, str],
                       run_id: str | None, model_type: str = "custom_model") -> ModelVersion: ...

    def get_model(self, name: str, version: int | None = None) -> ModelVersion: ...

    def latest_model(self, name: str) -> ModelVersion | None: ...

    def list_models(self, name: str | None = None) -> list[ModelVersion]: ...

    def upload_to_datastore(self, datastore: str, file: Path, path: str | None) -> str: ...


__all__ = ["Workspace", "ProgressCallback", "PublishedPipeline", "Run", "ModelVersion", "Deployment"]
