"""The local executor: runs a pipeline's steps as subprocesses, in topological order, in the snapshot.

Each step runs its component command in the component's code folder with its environment (built from the
component's conda file, else the current Python) first on PATH and the workspace's MLflow store as its
tracking URI; its output streams to the console (through on_event) and to the step's std_log.txt. A step whose
component, code and inputs are unchanged since an earlier successful run is reused, as Azure ML does.
Ctrl-C, SIGTERM and the timeout terminate the running step's whole process group and end the run
Canceled; nothing is left Running.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from amlops.errors import AmlopsError
from amlops.pipeline.model import COMMAND_REFERENCE, OPTIONAL_GROUP, Pipeline, Step
from amlops.processes import STOP_GRACE_S, log_tail, stop_process_group
from amlops.workspace.local.db import dumps, loads
from amlops.workspace.local.hash_cache import HashCache
from amlops.workspace.local.snapshot import content_hash
from amlops.workspace.metrics import METRICS_FILE

LOG_FILE = "std_log.txt"
TAIL_LINES = 15
SUPERVISOR_MARGIN_S = 10.0
GRACE_VARIABLE = "AMLOPS_STOP_GRACE_S"

EventCallback = Callable[[str, str, str], None]


class _Canceled(Exception):
    pass


class Executor:
    def __init__(self, workspace, pipeline: Pipeline, run_id: str, on_event: EventCallback | None = None,
                 reuse: bool = True, timeout_s: float | None = None):
        self.workspace = workspace
        self.pipeline = pipeline
        self.run_id = run_id
        self.on_event = on_event or (lambda kind, step, text: None)
        self.reuse = reuse
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.timeout_s = timeout_s
        self.stop_grace_s = _grace_s()
        self.cancel_reason: str | None = None
        self.process: subprocess.Popen | None = None
        self.step_outputs: dict[str, dict[str, str]] = {}
        self.step_status: dict[str, str] = {}
        self.warned: set[str] = set()
        self.hashes = HashCache(workspace.db)

    def execute(self) -> str:
        """Run every step; return the run's final status."""
        self.workspace.set_run_status(self.run_id, "Running")
        self.on_event("status", "", "Running")
        try:
            with _cancel_on_signals(self.cancel):
                failure = self._run_steps()
        except BaseException as error:  # noqa: B902 - a run must never stay Running
            for name in self.pipeline.order:
                if self.step_status.get(name) not in ("Completed", "Failed", "Canceled"):
                    self._set_step(name, "Canceled")
            self._finish(f"the executor stopped: {type(error).__name__}: {error}")
            raise
        return self._finish(failure)

    def cancel(self, reason: str) -> None:
        self.cancel_reason = self.cancel_reason or reason
        _stop_supervised(self.process)

    def _run_steps(self) -> str | None:
        failure = None
        for name in self.pipeline.order:
            step = self.pipeline.steps[name]
            blocked = [u for u in step.upstream() if self.step_status.get(u) != "Completed"]
            if self.cancel_reason or blocked or (failure and not self.pipeline.continue_on_step_failure):
                self._set_step(name, "Canceled")
                continue
            try:
                error = self._run_step(step)
            except _Canceled:
                self._set_step(name, "Canceled")
                continue
            except AmlopsError as problem:  # an input that cannot be resolved, an output folder not made
                self._set_step(name, "Failed")
                error = f"step '{name}' could not start: {problem}"
            failure = failure or error
        return failure

    def _finish(self, failure: str | None) -> str:
        if self.cancel_reason:
            status, error = "Canceled", self.cancel_reason
        elif failure:
            status, error = "Failed", failure
        else:
            status, error = "Completed", None
        outputs = self._pipeline_outputs()
        metrics = _read_metrics(outputs.get("metrics")) if status == "Completed" else {}
        self.workspace.set_run_status(self.run_id, status, error=error, outputs=outputs, metrics=metrics)
        self.on_event("status", "", status)
        return status

    def _run_step(self, step: Step) -> str | None:
        inputs = self._resolve_inputs(step)
        key = self._cache_key(step, inputs)
        cached = self.workspace.cached_step(key) if self.reuse and step.component.is_deterministic else None
        if cached is not None and all(Path(p).exists() for p in loads(cached["outputs"]).values()):
            self.step_outputs[step.name] = loads(cached["outputs"])
            self._set_step(step.name, "Completed", reused_from=cached["run_id"])
            self.on_event("info", step.name, f"reused the outputs of run {cached['run_id']}")
            return None
        step_dir = self.workspace.run_dir(self.run_id) / "steps" / step.name
        outputs = {name: str(step_dir / "outputs" / name) for name in step.component.outputs}
        for folder in outputs.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        self.step_outputs[step.name] = outputs
        step_dir.mkdir(parents=True, exist_ok=True)  # a step may have no outputs
        log_path = step_dir / LOG_FILE
        self._set_step(step.name, "Running", log_path=log_path)
        exit_code = self._run_command(step, render_command(step.component.command, inputs, outputs), log_path)
        if self.cancel_reason:
            raise _Canceled()
        if exit_code != 0:
            self._set_step(step.name, "Failed")
            return (f"step '{step.name}' failed with exit code {exit_code}; its log is {log_path}:\n"
                    + log_tail(log_path, TAIL_LINES))
        self._set_step(step.name, "Completed")
        self.workspace.remember_step(key, self.run_id, step.name, outputs)
        return None

    def _set_step(self, name: str, status: str, log_path: Path | None = None,
                  reused_from: str | None = None) -> None:
        self.step_status[name] = status
        self.workspace.set_step_status(self.run_id, name, status, log_path=log_path, reused_from=reused_from)
        self.on_event("status", name, status)

    def _resolve_inputs(self, step: Step) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in step.component.inputs.items():
            binding = step.inputs.get(name)
            if binding is None:
                values[name] = spec.default
            elif binding.parent_input is not None:
                value = self.pipeline.inputs[binding.parent_input].value
                values[name] = str(self.workspace.resolve_uri(value)) if spec.is_asset else value
            elif binding.job is not None:
                values[name] = self.step_outputs[binding.job][binding.job_output]
            else:
                literal = binding.literal
                values[name] = str(self.workspace.resolve_uri(str(literal))) if spec.is_asset else literal
        return values

    def _cache_key(self, step: Step, inputs: dict[str, Any]) -> str:
        component = step.component
        parts = [component.name, component.version, component.command, sorted(component.outputs)]
        parts.append(self.hashes.content_hash([component.code], relative_to=component.code) if component.code
                     else "")
        parts.append(_environment_key(component))
        for name in sorted(inputs):
            value = inputs[name]
            if component.inputs[name].is_asset and value is not None and Path(str(value)).exists():
                path = Path(str(value))
                parts.append([name, self.hashes.content_hash([path], relative_to=path.parent)])
            else:
                parts.append([name, value])
        return hashlib.sha256(dumps(parts).encode()).hexdigest()

    def _run_command(self, step: Step, command: str, log_path: Path) -> int:
        cwd = step.component.code or step.component.path.parent
        self.on_event("info", step.name, f"$ {command}")
        with open(log_path, "w", encoding="utf-8") as log:
            self.process = _start_supervised(command, cwd, self._environment(step), self.stop_grace_s)
            reader = threading.Thread(target=self._pump, args=(step.name, self.process, log), daemon=True)
            reader.start()
            exit_code = self._wait(self.process)
            _stop_supervised(self.process)  # close our end of its pipe
            reader.join(timeout=5)
            self.process = None
        return exit_code

    def _environment(self, step: Step) -> dict[str, str]:
        """The step's variables: its component's environment first on PATH, the workspace's MLflow store as its
        tracking server."""
        from amlops.pipeline.environments import step_environment
        from amlops.workspace.local.tracking import tracking_environment

        env = _step_environment(self.run_id, step.name)
        built = step_environment(step.component, lambda text: self.on_event("info", step.name, text))
        if built.warning and built.warning not in self.warned:
            self.warned.add(built.warning)
            self.on_event("warning", step.name, built.warning)
        if built.bin_dir is not None:
            env["PATH"] = str(built.bin_dir) + os.pathsep + env["PATH"]
            env["VIRTUAL_ENV"] = str(built.bin_dir.parent)
        env.pop("MLFLOW_RUN_ID", None)  # amlops itself may run inside an Azure ML job
        experiment = self.workspace.get_run(self.run_id).experiment
        env.update(tracking_environment(self.workspace.root, self.run_id, step.name, experiment))
        return env

    def _pump(self, step: str, process: subprocess.Popen, log) -> None:
        for line in process.stdout:
            log.write(line)
            log.flush()
            self.on_event("log", step, line.rstrip("\n"))

    def _wait(self, process: subprocess.Popen) -> int:
        """Wait for the step; once canceled, give its supervisor the grace period (and a margin) to stop
        the tree, then stop the supervisor and whatever is left ourselves."""
        stop_by = None
        while True:
            try:
                return process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.deadline is not None and time.monotonic() > self.deadline and not self.cancel_reason:
                    self.cancel(f"timed out after {self.timeout_s:g} s; raise the timeout or speed up the steps")
                if self.cancel_reason:  # also when canceled between the status change and the start
                    _stop_supervised(process)
                    stop_by = stop_by or time.monotonic() + self.stop_grace_s + SUPERVISOR_MARGIN_S
                    if time.monotonic() > stop_by:
                        stop_process_group(process.pid, grace_s=0)

    def _pipeline_outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for name, step in self.pipeline.steps.items():
            for output, binding in step.outputs.items():
                produced = self.step_outputs.get(name, {}).get(output)
                if binding.parent_output and produced:
                    outputs[binding.parent_output] = produced
        return outputs


def _environment_key(component) -> Any:
    """What a step's environment is made of (a changed conda file reruns the step, as on Azure ML)."""
    environment = component.environment
    if isinstance(environment, dict) and environment.get("conda_file"):
        conda = (component.path.parent / str(environment["conda_file"])).resolve()
        return [environment.get("image"), content_hash([conda], relative_to=conda.parent) if conda.is_file() else ""]
    return environment


def render_command(command: str, inputs: dict[str, Any], outputs: dict[str, str]) -> str:
    """Substitute ${{inputs.x}} / ${{outputs.y}}; drop each $[[...]] group whose inputs are unset."""
    def keep_group(match) -> str:
        names = [name for kind, name in COMMAND_REFERENCE.findall(match.group(1)) if kind == "inputs"]
        return match.group(1) if all(inputs.get(n) is not None for n in names) else ""

    def substitute(match) -> str:
        kind, name = match.group(1), match.group(2)
        value = inputs.get(name) if kind == "inputs" else outputs.get(name)
        return shlex.quote(str(value))

    return COMMAND_REFERENCE.sub(substitute, OPTIONAL_GROUP.sub(keep_group, command)).strip()


def _shell(command: str) -> list[str]:
    """Azure ML runs a component's command in a shell; do the same."""
    return ["cmd.exe", "/d", "/c", command] if os.name == "nt" else ["/bin/sh", "-c", command]


def _start_supervised(command: str, cwd: Path, env: dict[str, str], grace_s: float) -> subprocess.Popen:
    """The step under amlops.step_supervisor, whose stdin pipe only we hold: when we close it (cancel) or
    die (even by SIGKILL), the supervisor stops the step's whole process tree."""
    package_parent = Path(__file__).resolve().parents[2]  # so `-m` finds this amlops, not one in cwd
    supervisor = [sys.executable, "-m", "amlops.step_supervisor", f"{grace_s:g}", str(cwd), "--", *_shell(command)]
    return subprocess.Popen(supervisor, cwd=package_parent, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            text=True, encoding="utf-8", errors="replace", bufsize=1)


def _stop_supervised(process: subprocess.Popen | None) -> None:
    """Ask the supervisor to stop the step (SIGTERM to the tree, SIGKILL after the grace period)."""
    if process is not None and process.stdin is not None and not process.stdin.closed:
        try:
            process.stdin.close()
        except OSError:
            pass


def _step_environment(run_id: str, step: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["AZUREML_RUN_ID"] = f"{run_id}_{step}"
    return env


class _cancel_on_signals:
    """While executing, turn Ctrl-C and SIGTERM into a clean cancel (main thread only)."""

    def __init__(self, cancel: Callable[[str], None]):
        self.cancel = cancel
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum, reason in ((signal.SIGINT, "canceled with Ctrl-C"), (signal.SIGTERM, "canceled (SIGTERM)")):
            self.previous[signum] = signal.signal(signum, lambda *_, r=reason: self.cancel(r))
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _grace_s() -> float:
    """Seconds a canceled step gets between SIGTERM and SIGKILL (AMLOPS_STOP_GRACE_S, default 10)."""
    try:
        value = float(os.environ.get(GRACE_VARIABLE) or STOP_GRACE_S)
    except ValueError:
        return STOP_GRACE_S
    return value if 0 <= value < 3600 else STOP_GRACE_S


def _read_metrics(folder: str | None) -> dict:
    if not folder:
        return {}
    path = Path(folder) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}  # the gate's run_metrics says what is wrong with it
