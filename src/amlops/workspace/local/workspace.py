"""The embedded local workspace: a folder with a SQLite database and plain folders.

Layout under the root (default `.amlops/`):
  workspace.db                     metadata (pipelines, runs, steps, models, deployments)
  snapshots/<pipeline>/<version>/  immutable copies of the published YAML, components, code, inputs
  objects/<sha256>                 each distinct snapshot file once, hard-linked into the snapshots
  runs/<run id>/steps/<step>/      per-step std_log.txt and outputs/<name>/
  datastores/<datastore>/<path>    what `amlops datastore upload` put there
  models/<name>/<version>/         registered model files
  deployments/<name>/<id>/         a deployment's model, scoring folder and server log

Paths are stored relative to the root, so a copied or moved workspace keeps working; every path written,
read or deleted is built with `paths.inside`, which refuses anything outside the root.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from amlops import names
from amlops.errors import AmlopsError, NotFoundError
from amlops.workspace.metrics import METRICS_FILE, missing, parse_metrics
from amlops.pipeline.loader import datastore_reference, load_pipeline
from amlops.locks import FileLock, held_by_someone
from amlops.pipeline.model import pipeline_name
from amlops.processes import process_alive
from amlops.workspace.local import db as local_db
from amlops.workspace.entities import Deployment, ModelVersion, PublishedPipeline, Run, StepRun
from amlops.workspace.local.discovery import find_workspace
from amlops.workspace.local.models import MODEL_TYPE_PROPERTY, check_model_type
from amlops.workspace.local.db import dumps, loads, now, write_transaction
from amlops.workspace.local.paths import absolute, inside, relative, remove_tree
from amlops.workspace.local.snapshot import content_hash, copy_files, copy_snapshot, snapshot_root, walk

DEFAULT_ROOT = ".amlops"
DATABASE = "workspace.db"
OBJECTS = "objects"  # content-addressed file store behind the snapshots: objects/<sha256>


def default_root() -> Path:
    return find_workspace()


class LocalWorkspace:
    kind = "local"

    def __init__(self, root: str | Path | None = None):
        # absolute: steps run in their snapshot's code folder and get output paths under this root
        self.root = (Path(root) if root else default_root()).absolute()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _refuse_foreign_folder(self.root)
            self.db = local_db.connect(self.root / DATABASE)
            local_db.migrate(self.db, self.root)
        except (OSError, sqlite3.Error) as error:
            raise AmlopsError(f"cannot open the local workspace at {self.root}: {error}; "
                              "pass --workspace with a writable folder") from None
        self._run_locks: dict[str, FileLock] = {}
        self._fail_orphaned_runs()

    def path(self, *parts: str) -> Path:
        """A path inside the workspace; anything else is refused (see `paths.inside`)."""
        return inside(self.root, *parts)

    def __repr__(self) -> str:
        return f"LocalWorkspace({str(self.root)!r})"

    # pipelines

    def publish_pipeline(self, pipeline_file: Path, name: str | None = None,
                         version: str | None = None) -> PublishedPipeline:
        pipeline = load_pipeline(pipeline_file)
        if name:
            names.check(names.PIPELINE, name, "pipeline name")
        name = pipeline_name(name) if name else pipeline.name  # one spelling on both backends
        if version is not None:
            names.check(names.PIPELINE_VERSION, version, "pipeline version")
        root = snapshot_root(pipeline.files)
        files = walk(pipeline.files, within=pipeline.repository)  # a symlink loop, a fifo... refused here
        hashes: dict[Path, str] = {}
        digest = content_hash(pipeline.files, relative_to=root, walked=files, hashes=hashes)
        existing = self._find_pipeline(name, version)
        if existing is not None and (version or existing["content_hash"] == digest):
            # the same content as that version (or, without --version, as the latest): publishing is a no-op
            return self._same_content_or_fail(existing, digest, name, version or existing["version"])
        staging = self.path("snapshots", name, f".staging-{uuid.uuid4().hex}")
        try:
            copy_snapshot(pipeline.files, staging, walked=files, objects=self.root / OBJECTS, hashes=hashes)
            with write_transaction(self.db):
                existing = self._find_pipeline(name, version)  # again, under the write lock
                if existing is not None and (version or existing["content_hash"] == digest):
                    return self._same_content_or_fail(existing, digest, name, version or existing["version"])
                version = version or self._next_pipeline_version(name)
                destination = self.path("snapshots", name, version)
                remove_tree(self.root, destination)  # a folder no row points at: left by a crash
                os.replace(staging, destination)
                snapshot = destination / pipeline.path.relative_to(root)
                self.db.execute(
                    "INSERT INTO pipelines VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, version, f"{name}:{version}", str(pipeline.path), relative(self.root, snapshot),
                     digest, now()))
        finally:
            remove_tree(self.root, staging)
        return self.get_pipeline(name, version)

    def _same_content_or_fail(self, existing: sqlite3.Row, digest: str, name: str,
                              version: str) -> PublishedPipeline:
        if existing["content_hash"] != digest:
            raise AmlopsError(f"pipeline {name} version {version} is already published with different "
                              "content; publish under a new --version")
        return _pipeline(existing, self.root)

    def _next_pipeline_version(self, name: str) -> str:
        versions = [row[0] for row in self.db.execute("SELECT version FROM pipelines WHERE name = ?", (name,))]
        numbers = [int(v) for v in versions if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _find_pipeline(self, name: str, version: str | None) -> sqlite3.Row | None:
        name = pipeline_name(name)
        if version:
            return self.db.execute("SELECT * FROM pipelines WHERE name = ? AND version = ?",
                                   (name, version)).fetchone()
        return self.db.execute("SELECT * FROM pipelines WHERE name = ? ORDER BY created_at DESC, rowid DESC",
                               (name,)).fetchone()

    def get_pipeline(self, name: str, version: str | None = None) -> PublishedPipeline:
        row = self._find_pipeline(name, version)
        if row is None:
            known = ", ".join(p.name for p in self.list_pipelines()) or "none yet"
            what = f"pipeline {name}" + (f" version {version}" if version else "")
            raise NotFoundError(f"{what} is not published in {self.root} (published: {known}); "
                                "run `amlops publish <pipeline.yml>` first")
        return _pipeline(row, self.root)

    def list_pipelines(self) -> list[PublishedPipeline]:
        rows = self.db.execute("SELECT * FROM pipelines ORDER BY name, created_at, rowid")
        return [_pipeline(row, self.root) for row in rows]

    # runs

    def submit_run(self, pipeline: PublishedPipeline, overrides: dict[str, str], experiment: str | None,
                   tags: dict[str, str], timeout_s: float | None, reuse: bool, on_event=None,
                   wait: bool = True) -> Run:
        from amlops.pipeline.executor import Executor

        if not wait:
            raise AmlopsError("the local workspace runs a pipeline in this process, so it cannot submit without "
                              "waiting; use an Azure ML workspace for that")
        loaded = load_pipeline(pipeline.snapshot, overrides,
                               repository=self.path("snapshots", pipeline.name, pipeline.version))
        run_id = self.create_run(pipeline, loaded.order, experiment or loaded.experiment_name,
                                 {name: spec.value for name, spec in loaded.inputs.items()}, tags)
        Executor(self, loaded, run_id, on_event=on_event, reuse=reuse, timeout_s=timeout_s).execute()
        return self.get_run(run_id)

    def create_run(self, pipeline: PublishedPipeline, steps: tuple[str, ...], experiment: str,
                   parameters: dict, tags: dict[str, str]) -> str:
        run_id = f"run-{now().replace(':', '').replace('-', '')[:15]}-{uuid.uuid4().hex[:6]}"
        owner = FileLock(self._owner_lock(run_id))  # held while this process runs it, released by the OS
        owner.acquire()
        self._run_locks[run_id] = owner
        with write_transaction(self.db):
            self.db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, 'NotStarted', ?, NULL, ?, ?, '{}', '{}', NULL, ?)",
                (run_id, pipeline.name, pipeline.version, experiment, now(), dumps(parameters), dumps(tags),
                 os.getpid()))
            for position, step in enumerate(steps):
                self.db.execute("INSERT INTO steps VALUES (?, ?, ?, 'NotStarted', NULL, NULL, NULL, NULL)",
                                (run_id, step, position))
        return run_id

    def run_dir(self, run_id: str) -> Path:
        return self.path("runs", run_id)

    def _owner_lock(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "owner.lock"

    def set_run_status(self, run_id: str, status: str, error: str | None = None,
                       outputs: dict | None = None, metrics: dict | None = None) -> None:
        ended = now() if status in ("Completed", "Failed", "Canceled") else None
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE runs SET status = ?, ended_at = COALESCE(?, ended_at), error = COALESCE(?, error), "
                "outputs = COALESCE(?, outputs), metrics = COALESCE(?, metrics) WHERE id = ?",
                (status, ended, error, dumps(self._relative_paths(outputs)) if outputs is not None else None,
                 dumps(metrics) if metrics is not None else None, run_id))
        if ended and run_id in self._run_locks:
            self._run_locks.pop(run_id).release()

    def set_step_status(self, run_id: str, step: str, status: str, log_path: Path | None = None,
                        reused_from: str | None = None) -> None:
        started = now() if status == "Running" else None
        ended = now() if status in ("Completed", "Failed", "Canceled") else None
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE steps SET status = ?, started_at = COALESCE(?, started_at), "
                "ended_at = COALESCE(?, ended_at), log_path = COALESCE(?, log_path), "
                "reused_from = COALESCE(?, reused_from) WHERE run_id = ? AND name = ?",
                (status, started, ended, relative(self.root, log_path) if log_path else None, reused_from,
                 run_id, step))

    def get_run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id} not found in {self.root}; `amlops runs list` shows the runs")
        steps = self.db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))
        return _run(row, tuple(_step(s, self.root) for s in steps), self.root)

    def list_runs(self, limit: int = 20) -> list[Run]:
        rows = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return [self.get_run(row["id"]) for row in rows.fetchall()]

    def run_output(self, run: Run, output: str) -> Path:
        if output not in run.outputs:
            known = ", ".join(run.outputs) or "none"
            raise NotFoundError(f"run {run.id} has no output '{output}' (outputs: {known}); "
                                "check the output name in the pipeline's 'outputs'")
        return Path(run.outputs[output])

    def run_metrics(self, run: Run, output: str) -> dict:
        path = self.run_output(run, output) / METRICS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            raise NotFoundError(missing(f"run {run.id}'s output '{output}'", output)) from None
        return parse_metrics(text, str(path))

    def _fail_orphaned_runs(self) -> None:
        """A run whose executing process is gone (killed, machine rebooted) must not stay Running: the owner
        holds a lock on runs/<id>/owner.lock, which the OS releases however the process ends (a reused pid
        cannot keep it); runs from before the lock fall back to the pid."""
        rows = self.db.execute("SELECT id, owner_pid FROM runs WHERE status IN ('NotStarted', 'Running')")
        for row in rows.fetchall():
            lock = self._owner_lock(row["id"])
            if not (held_by_someone(lock) if lock.exists() else process_alive(row["owner_pid"])):
                message = f"the process running it (pid {row['owner_pid']}) ended before the run finished"
                with write_transaction(self.db):
                    self.db.execute("UPDATE steps SET status = 'Canceled', ended_at = ? WHERE run_id = ? "
                                    "AND status IN ('NotStarted', 'Running')", (now(), row["id"]))
                    self.db.execute("UPDATE runs SET status = 'Failed', ended_at = ?, error = ? WHERE id = ?",
                                    (now(), message, row["id"]))

    # step reuse

    def cached_step(self, key: str) -> dict | None:
        """The earlier run of a step with this cache key: run_id, step and outputs (JSON of absolute paths)."""
        row = self.db.execute("SELECT * FROM step_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        outputs = self._absolute_paths(loads(row["outputs"]))
        return {"run_id": row["run_id"], "step": row["step"], "outputs": dumps(outputs)}

    def remember_step(self, key: str, run_id: str, step: str, outputs: dict[str, str]) -> None:
        with write_transaction(self.db):
            self.db.execute("INSERT OR REPLACE INTO step_cache VALUES (?, ?, ?, ?)",
                            (key, run_id, step, dumps(self._relative_paths(outputs))))

    def _relative_paths(self, paths: dict[str, str] | None) -> dict[str, str] | None:
        return None if paths is None else {name: relative(self.root, path) for name, path in paths.items()}

    def _absolute_paths(self, paths: dict[str, str]) -> dict[str, str]:
        return {name: str(absolute(self.root, path)) for name, path in paths.items()}

    # datastores

    def upload_to_datastore(self, datastore: str, file: Path, path: str | None = None) -> str:
        names.check(names.DATASTORE, datastore, "datastore name")
        relative_path = names.datastore_path(path if path is not None else file.name, "datastore path")
        if not file.is_file():
            what = "not a regular file" if file.exists() else "no such file"
            raise AmlopsError(f"--file {file}: {what}; give the training data file to upload")
        target = self.path("datastores", datastore, *relative_path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path("datastores", datastore, *relative_path.split("/")[:-1],
                              f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(file, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return f"azureml://datastores/{datastore}/paths/{relative_path}"

    def resolve_uri(self, value: str) -> Path:
        reference = datastore_reference(value)
        if reference is None:
            if "://" in value or value.startswith("azureml:"):
                raise AmlopsError(f"input {value} cannot be read by the local workspace; use a local path or "
                                  "azureml://datastores/<name>/paths/<path>")
            return Path(value)
        datastore, relative_path = reference
        names.check(names.DATASTORE, datastore, f"{value}: datastore name")
        names.datastore_path(relative_path, f"{value}: path")
        target = self.path("datastores", datastore, *relative_path.split("/"))
        if not target.exists():
            raise AmlopsError(f"{value} not found in the local workspace ({target} is missing); upload it with "
                              f"`amlops datastore upload --datastore {datastore} --file <file> --path {relative_path}`")
        return target

    # models

    def register_model(self, name: str, source: Path, tags: dict[str, str], properties: dict[str, str],
                       run_id: str | None = None, model_type: str = "custom_model") -> ModelVersion:
        """Copy the files aside first, then claim the version and move them in one locked transaction,
        so a crash leaves either a complete version or nothing (a stray temporary folder at most)."""
        names.check(names.MODEL, name, "model name")
        if not source.exists():
            raise AmlopsError(f"model files {source} not found; give a file or folder that exists")
        check_model_type(model_type, source)
        properties = {**properties, MODEL_TYPE_PROPERTY: model_type}
        staging = self.path("models", name, f".staging-{uuid.uuid4().hex}")
        try:
            copy_files(source, staging)
            with write_transaction(self.db):
                version = self._next_model_version(name)
                final = self.path("models", name, str(version))
                remove_tree(self.root, final)  # a folder no row points at: left by a crash
                os.replace(staging, final)
                self.db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (name, version, relative(self.root, final), dumps(tags), dumps(properties), run_id,
                                 now()))
        finally:
            remove_tree(self.root, staging)
        return self.get_model(name, version)

    def _next_model_version(self, name: str) -> int:
        row = self.db.execute("SELECT MAX(version) FROM models WHERE name = ?", (name,)).fetchone()
        return (row[0] or 0) + 1

    def get_model(self, name: str, version: int | None = None) -> ModelVersion:
        if version is None:
            row = self.db.execute("SELECT * FROM models WHERE name = ? ORDER BY version DESC", (name,)).fetchone()
        else:
            row = self.db.execute("SELECT * FROM models WHERE name = ? AND version = ?",
                                  (name, names.model_version(version, f"model {name} version"))).fetchone()
        if row is None:
            what = f"model {name}" + (f" version {version}" if version is not None else "")
            raise NotFoundError(f"{what} is not registered in {self.root}; `amlops models list` shows "
                                "the registered models")
        return _model(row, self.root)

    def latest_model(self, name: str) -> ModelVersion | None:
        try:
            return self.get_model(name)
        except NotFoundError:
            return None

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        if name:
            rows = self.db.execute("SELECT * FROM models WHERE name = ? ORDER BY version", (name,))
        else:
            rows = self.db.execute("SELECT * FROM models ORDER BY name, version")
        return [_model(row, self.root) for row in rows]

    # deployments

    def deployment_dir(self, name: str) -> Path:
        """A new folder for one deployment of `name` (a deployment keeps serving from its own folder)."""
        names.check(names.DEPLOYMENT, name, "deployment name")
        return self.path("deployments", name, uuid.uuid4().hex[:8])

    def discard(self, path: Path) -> None:
        """Delete a folder of the workspace and the parents it leaves empty."""
        remove_tree(self.root, path)

    def save_deployment(self, deployment: Deployment) -> None:
        with write_transaction(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (deployment.name, deployment.model_name, deployment.model_version, deployment.scoring_uri,
                 deployment.status, deployment.created_at, deployment.pid,
                 relative(self.root, deployment.log_path) if deployment.log_path else None, deployment.error))

    def get_deployment(self, name: str) -> Deployment:
        deployment = self.find_deployment(name)
        if deployment is None:
            raise NotFoundError(f"deployment {name} not found in {self.root}; `amlops deployments list` "
                                "shows the deployments")
        return deployment

    def find_deployment(self, name: str) -> Deployment | None:
        row = self.db.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
        return _deployment(row, self.root) if row else None

    def list_deployments(self) -> list[Deployment]:
        return [_deployment(row, self.root) for row in self.db.execute("SELECT * FROM deployments ORDER BY name")]

    def remove_deployment(self, name: str) -> None:
        with write_transaction(self.db):
            self.db.execute("DELETE FROM deployments WHERE name = ?", (name,))
        folder = self.path("deployments", name)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _refuse_foreign_folder(root: Path) -> None:
    """A folder without a workspace database (or with an empty one) becomes a workspace only when it is empty:
    never take over a folder of other files."""
    database = root / DATABASE
    if database.is_file() and database.stat().st_size > 0:
        return
    ours = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal"}
    others = sorted(entry.name for entry in root.iterdir() if entry.name not in ours)
    if others:
        state = "an empty" if database.exists() else "no"
        raise AmlopsError(f"{root} is not an amlops workspace: it has {state} {DATABASE} but holds other files "
                          f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); pass --workspace with a "
                          "new or empty folder, or the folder of an existing workspace")


def _pipeline(row: sqlite3.Row, root: Path) -> PublishedPipeline:
    return PublishedPipeline(name=row["name"], version=row["version"], id=row["id"], source=row["source"],
                             created_at=row["created_at"], snapshot=absolute(root, row["snapshot"]))


def _step(row: sqlite3.Row, root: Path) -> StepRun:
    return StepRun(name=row["name"], status=row["status"], started_at=row["started_at"],
                   ended_at=row["ended_at"], reused_from=row["reused_from"],
                   log_path=absolute(root, row["log_path"]) if row["log_path"] else None)


def _run(row: sqlite3.Row, steps: tuple[StepRun, ...], root: Path) -> Run:
    outputs = {name: str(absolute(root, path)) for name, path in loads(row["outputs"]).items()}
    return Run(id=row["id"], pipeline_name=row["pipeline_name"], pipeline_version=row["pipeline_version"],
               experiment=row["experiment"], status=row["status"], created_at=row["created_at"],
               ended_at=row["ended_at"], parameters=loads(row["parameters"]), tags=loads(row["tags"]),
               steps=steps, outputs=outputs, metrics=loads(row["metrics"]), error=row["error"])


def _model(row: sqlite3.Row, root: Path) -> ModelVersion:
    properties = loads(row["properties"])
    return ModelVersion(name=row["name"], version=row["version"], path=absolute(root, row["path"]),
                        tags=loads(row["tags"]), properties=properties, run_id=row["run_id"],
                        created_at=row["created_at"], type=properties.get(MODEL_TYPE_PROPERTY, "custom_model"))


def _deployment(row: sqlite3.Row, root: Path) -> Deployment:
    return Deployment(name=row["name"], model_name=row["model_name"], model_version=row["model_version"],
                      scoring_uri=row["scoring_uri"], status=row["status"], created_at=row["created_at"],
                      pid=row["pid"], log_path=absolute(root, row["log_path"]) if row["log_path"] else None,
                      error=row["error"])
