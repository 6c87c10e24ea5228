"""The local deployment target: a registered model served by the real Azure ML inference server.

Files are laid out as Azure ML lays them in an inference container: the model under
`azureml-models/<name>/<version>/` (AZUREML_MODEL_DIR) and the scoring folder as the app root
(AML_APP_ROOT, AZUREML_ENTRY_SCRIPT). The server runs detached (it outlives the command) on a free
loopback port; its log is kept in the deployment folder.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from amlops.deploy.local.server_env import server_python
from amlops.errors import AmlopsError
from amlops.processes import command_line, log_tail, process_alive, stop_process_group

__all__ = ["deploy_local", "delete_local", "refresh", "current_status", "process_alive"]
from amlops.workspace.entities import Deployment, ModelVersion
from amlops.workspace.local.workspace import LocalWorkspace
from amlops.workspace.local.db import now
from amlops.workspace.local.snapshot import copy_files

LIVENESS_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 25
SERVER_APP = "azureml_inference_server_http.server.entry:app"


def deploy_local(ws: LocalWorkspace, model: ModelVersion, name: str, scoring_folder: Path,
                 entry_script: str = "score.py", on_info: Callable[[str], None] = print,
                 liveness_timeout_s: float = LIVENESS_TIMEOUT_S) -> Deployment:
    """Start a server for `model` under deployment `name`; an existing one is replaced only once the
    new one is alive, so a failed redeploy leaves the old version serving."""
    _check_scoring_folder(scoring_folder, entry_script)
    python = server_python(scoring_folder / "requirements.txt", on_info)
    folder = ws.deployment_dir(name)
    try:
        model_dir = _stage(folder, model, scoring_folder)
    except BaseException:
        ws.discard(folder)
        raise
    port = _free_port()
    log_path = folder / "server.log"
    process = _start(python, folder / "app", model_dir, entry_script, port, log_path)
    try:
        _wait_alive(process, port, log_path, liveness_timeout_s)
    except BaseException:
        stop_process_group(process.pid)
        ws.discard(folder)
        raise
    previous = ws.find_deployment(name)
    deployment = Deployment(name=name, model_name=model.name, model_version=model.version,
                            scoring_uri=f"http://127.0.0.1:{port}/score", status="Healthy",
                            created_at=now(), pid=process.pid, log_path=log_path)
    ws.save_deployment(deployment)
    if previous is not None:
        _stop(previous)
    return deployment


def _check_scoring_folder(folder: Path, entry_script: str) -> None:
    if not (folder / entry_script).is_file():
        raise AmlopsError(f"entry script {folder / entry_script} not found; pass --scoring-folder with the "
                          "folder holding score.py (and its requirements.txt)")


def _stage(folder: Path, model: ModelVersion, scoring_folder: Path) -> Path:
    model_dir = folder / "azureml-models" / model.name / str(model.version)
    copy_files(model.path, model_dir)  # regular files only: a fifo would hang a plain copy
    copy_files(scoring_folder, folder / "app")
    return model_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(python: Path, app_root: Path, model_dir: Path, entry_script: str, port: int,
           log_path: Path) -> subprocess.Popen:
    """gunicorn with the inference server's WSGI app, as its `azmlinfsrv` launcher runs it, but bound to
    loopback only (azmlinfsrv always binds 0.0.0.0)."""
    env = {**os.environ, "AZUREML_MODEL_DIR": str(model_dir), "AML_APP_ROOT": str(app_root),
           "AZUREML_ENTRY_SCRIPT": entry_script, "SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    config = log_path.parent / "gunicorn.conf.py"
    # gunicorn >= 25 opens a control socket at one fixed path in $HOME, which two servers would share.
    config.write_text("control_socket_disable = True\n")
    command = [str(python), "-m", "gunicorn", "-c", str(config), "-b", f"127.0.0.1:{port}", "-w", "1",
               "--timeout", "300", "--access-logfile", "-", "--error-logfile", "-", SERVER_APP]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=app_root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_alive(process: subprocess.Popen, port: int, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AmlopsError(f"the inference server exited with code {process.returncode} before it "
                              f"answered; the end of its log ({log_path}):\n{log_tail(log_path, LOG_TAIL_LINES)}")
        if liveness(port):
            return
        time.sleep(0.2)
    raise AmlopsError(f"the inference server did not answer on port {port} within {timeout_s:g} s; "
                      f"the end of its log ({log_path}):\n{log_tail(log_path, LOG_TAIL_LINES)}")


def liveness(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port(deployment: Deployment) -> int:
    return int(deployment.scoring_uri.rsplit(":", 1)[1].split("/")[0])


def _ours(deployment: Deployment) -> bool:
    """The pid is still our server (not a reused pid of something else)."""
    return process_alive(deployment.pid) and f"127.0.0.1:{_port(deployment)}" in command_line(deployment.pid)


def current_status(deployment: Deployment) -> str:
    """Healthy only if the process is alive and answers liveness; never trust the stored status."""
    if not _ours(deployment):
        return "Dead"
    return "Healthy" if liveness(_port(deployment)) else "Unhealthy"


def refresh(ws: LocalWorkspace, deployment: Deployment) -> Deployment:
    from dataclasses import replace

    status = current_status(deployment)
    if status != deployment.status:
        error = None if status == "Healthy" else f"server process {deployment.pid} is {status.lower()}"
        deployment = replace(deployment, status=status, error=error)
        ws.save_deployment(deployment)
    return deployment


def _stop(deployment: Deployment) -> None:
    if _ours(deployment):
        stop_process_group(deployment.pid)
    if deployment.log_path:
        shutil.rmtree(deployment.log_path.parent, ignore_errors=True)


def delete_local(ws: LocalWorkspace, name: str) -> Deployment:
    deployment = ws.get_deployment(name)
    _stop(deployment)
    ws.remove_deployment(name)
    return deployment
