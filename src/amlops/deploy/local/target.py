"""The local deployment target: a registered model served by the real Azure ML inference server.

Files are laid out as Azure ML lays them in an inference container: the model under
`azureml-models/<name>/<version>/` (AZUREML_MODEL_DIR) and the scoring folder as the app root
(AML_APP_ROOT, AZUREML_ENTRY_SCRIPT). The server runs detached (it outlives the command) on a free
loopback port; its log is kept in the deployment folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from amlops import bounded_http
from amlops.deploy.local.server_env import server_python
from amlops.errors import AmlopsError
from amlops.locks import FileLock
from amlops.processes import (STOP_GRACE_S, first_error, listening_pids, log_tail, owns_port, process_alive,
                              stop_process_group)

__all__ = ["deploy_local", "delete_local", "refresh", "current_status", "process_alive"]
from amlops.workspace.entities import Deployment, ModelVersion
from amlops.workspace.local.workspace import LocalWorkspace
from amlops.workspace.local.db import now
from amlops.workspace.local.snapshot import content_hash, copy_files

LIVENESS_TIMEOUT_S = 120.0
LIVENESS_PROBE_S = 2.0
LIVENESS_MAX_BODY = 64 * 1024
NAME_LOCK_MARGIN_S = 60.0
LOG_TAIL_LINES = 25
SERVER_APP = "azureml_inference_server_http.server.entry:app"
FIRST_POLL_S, LAST_POLL_S = 0.05, 0.5
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 1
SERVED_FILE = "served.json"  # what a server was started with: the key of a no-op redeploy


def deploy_local(ws: LocalWorkspace, model: ModelVersion, name: str, scoring_folder: Path,
                 entry_script: str = "score.py", on_info: Callable[[str], None] = print,
                 liveness_timeout_s: float = LIVENESS_TIMEOUT_S, workers: int | None = None) -> Deployment:
    """Start a server for `model` under deployment `name`; an existing one is replaced only once the
    new one answers, so a failed redeploy leaves the old version serving. The deployment keeps its port
    when that port is free. One deploy per name at a time (a second one waits). A redeploy of the same
    model version, scoring code and workers to a healthy server of ours is a no-op."""
    _check_scoring_folder(scoring_folder, entry_script)
    workers = workers or default_workers()
    served = _served(model, scoring_folder, entry_script, workers)
    with _name_lock(ws, name, on_info, liveness_timeout_s):
        previous = ws.find_deployment(name)
        if previous is not None and _same_server(previous, served):
            on_info(f"{name} already serves {model.name}:{model.version} with the same scoring code and "
                    f"{workers} worker(s) on {previous.scoring_uri}; the running server is kept")
            return previous
        python = server_python(scoring_folder / "requirements.txt", on_info)
        kept_port = _port(previous) if previous else None
        folder = ws.deployment_dir(name)
        try:
            model_dir = _stage(folder, model, scoring_folder)
        except BaseException:
            ws.discard(folder)
            raise
        old_serving = previous is not None and _ours(previous)
        shared = old_serving and _reuses_port(previous)
        if kept_port and (shared or not old_serving and _port_free(kept_port)):
            port, probe_port = kept_port, _free_port() if shared else None
        else:
            port, probe_port = _free_port(), None
        try:
            process = _serve(python, folder, model_dir, entry_script, port, liveness_timeout_s, workers, probe_port)
        except BaseException:
            ws.discard(folder)
            raise
        (folder / SERVED_FILE).write_text(json.dumps(served))
        deployment = _save(ws, name, model, port, process.pid, folder / "server.log")
        if previous is not None:
            _stop(previous)
        if kept_port and port != kept_port:
            deployment = _move_back(ws, deployment, model, python, folder, model_dir, entry_script, kept_port,
                                    liveness_timeout_s, on_info, workers)
    return deployment


def default_workers() -> int:
    """One gunicorn worker process per core (the inference server's handler holds the GIL)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _served(model: ModelVersion, scoring_folder: Path, entry_script: str, workers: int) -> dict:
    code = content_hash([scoring_folder], relative_to=scoring_folder)
    key = hashlib.sha256(json.dumps([model.name, model.version, code, entry_script, workers]).encode()).hexdigest()
    return {"key": key, "reuse_port": True}


def _recorded(deployment: Deployment) -> dict:
    try:
        return json.loads((deployment.log_path.parent / SERVED_FILE).read_text()) if deployment.log_path else {}
    except (OSError, ValueError):
        return {}


def _same_server(previous: Deployment, served: dict) -> bool:
    return _recorded(previous).get("key") == served["key"] and current_status(previous) == "Healthy"


def _reuses_port(deployment: Deployment) -> bool:
    """Started by amlops with SO_REUSEPORT, so the next server can bind the same port while it serves."""
    return _recorded(deployment).get("reuse_port") is True


def _serve(python: Path, folder: Path, model_dir: Path, entry_script: str, port: int,
           timeout_s: float, workers: int, probe_port: int | None = None) -> subprocess.Popen:
    """A server on port that answers liveness and owns the port, or an error (and nothing left running).
    With probe_port, the server also listens there: while the old server shares `port`, only an answer
    on probe_port proves that the new one is ready."""
    log_path = folder / "server.log"
    ports = [port] + ([probe_port] if probe_port else [])
    process = _start(python, folder / "app", model_dir, entry_script, ports, log_path, workers)
    try:
        for each in ports:
            _wait_alive(process, each, log_path, timeout_s, probe=each == ports[-1])
    except BaseException:
        stop_process_group(process.pid)
        raise
    return process


def _move_back(ws: LocalWorkspace, deployment: Deployment, model: ModelVersion, python: Path, folder: Path,
               model_dir: Path, entry_script: str, kept_port: int, timeout_s: float,
               on_info: Callable[[str], None], workers: int) -> Deployment:
    """After a blue/green switch on a temporary port, serve on the deployment's own port again, so the
    scoring URI users pasted keeps working; if that port is taken meanwhile, stay where we are."""
    if not _port_free(kept_port):
        on_info(f"port {kept_port} is taken by another process: {deployment.name} now serves on "
                f"{deployment.scoring_uri}")
        return deployment
    try:
        process = _serve(python, folder, model_dir, entry_script, kept_port, timeout_s, workers)
    except AmlopsError as error:
        on_info(f"could not serve {deployment.name} on its port {kept_port} again ({str(error).splitlines()[0]}); "
                f"it now serves on {deployment.scoring_uri}")
        return deployment
    moved = _save(ws, deployment.name, model, kept_port, process.pid, folder / "server.log")
    stop_process_group(deployment.pid)
    return moved


def _save(ws: LocalWorkspace, name: str, model: ModelVersion, port: int, pid: int, log_path: Path) -> Deployment:
    deployment = Deployment(name=name, model_name=model.name, model_version=model.version,
                            scoring_uri=f"http://127.0.0.1:{port}/score", status="Healthy",
                            created_at=now(), pid=pid, log_path=log_path)
    ws.save_deployment(deployment)
    return deployment


@contextmanager
def _name_lock(ws: LocalWorkspace, name: str, on_info: Callable[[str], None], timeout_s: float) -> Iterator[None]:
    """One deploy (or delete) per deployment name at a time, across processes."""
    lock = FileLock(ws.path("locks", f"deployment-{name}.lock"))
    if not lock.acquire(timeout_s=0):
        on_info(f"another deploy of {name} is in progress; waiting for it to finish")
        if not lock.acquire(timeout_s=2 * timeout_s + NAME_LOCK_MARGIN_S):
            raise AmlopsError(f"another deploy of {name} is still running; try again when it has finished")
    try:
        yield
    finally:
        lock.release()


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


def _port_free(port: int) -> bool:
    """True if a server could bind 127.0.0.1:port now (as gunicorn does, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not listening_pids(port)


def _start(python: Path, app_root: Path, model_dir: Path, entry_script: str, ports: list[int],
           log_path: Path, workers: int) -> subprocess.Popen:
    """gunicorn with the inference server's WSGI app, as its `azmlinfsrv` launcher runs it, but bound to
    loopback only (azmlinfsrv always binds 0.0.0.0), with SO_REUSEPORT (a redeploy starts the next server
    on the same port before this one stops) and no access log (the server logs each request itself)."""
    env = {**os.environ, "AZUREML_MODEL_DIR": str(model_dir), "AML_APP_ROOT": str(app_root),
           "AZUREML_ENTRY_SCRIPT": entry_script, "SERVER_PORT": str(ports[0]), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    # OpenMP (LightGBM, numpy's BLAS) starts a thread per core in every worker, and its idle threads spin: with
    # a worker per core they take each other's cores (2 workers served half the requests of 1).
    env.setdefault("OMP_NUM_THREADS", str(max(1, default_workers() // workers)))
    _bound_logs(app_root, log_path)
    config = log_path.parent / "gunicorn.conf.py"
    # gunicorn >= 25 opens a control socket at one fixed path in $HOME, which two servers would share.
    config.write_text("control_socket_disable = True\n")
    binds = [argument for port in ports for argument in ("-b", f"127.0.0.1:{port}")]
    command = [str(python), "-m", "gunicorn", "-c", str(config), *binds, "-w", str(workers), "--reuse-port",
               "--timeout", "300", "--error-logfile", "-", SERVER_APP]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=app_root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _bound_logs(app_root: Path, log_path: Path) -> None:
    """The server's logging, as its own default but into log_path rotated at LOG_MAX_BYTES: the inference
    server reads logging.json from the app root (a scoring folder that ships one keeps its own)."""
    target = app_root / "logging.json"
    if target.exists():
        return
    handler = {"class": "logging.handlers.RotatingFileHandler", "filename": str(log_path), "level": "INFO",
               "maxBytes": LOG_MAX_BYTES, "backupCount": LOG_BACKUPS, "formatter": "azmlinfsrv"}
    target.write_text(json.dumps({
        "version": 1,
        "handlers": {"azmlinfsrv": handler},
        "formatters": {"azmlinfsrv": {"class": "azureml_inference_server_http.log_config.AMLLogFormatter",
                                      "format": "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"}},
        "loggers": {"azmlinfsrv": {"level": "INFO", "handlers": ["azmlinfsrv"], "propagate": False},
                    "gunicorn.error": {"level": "INFO", "handlers": ["azmlinfsrv"], "propagate": False}},
    }, indent=1))


def _wait_alive(process: subprocess.Popen, port: int, log_path: Path, timeout_s: float, probe: bool = True) -> None:
    """Until the server we started holds its port and answers there: an answer from a process that is not
    ours (a server that took the port first) does not count. Polls from FIRST_POLL_S, backing off."""
    deadline = time.monotonic() + timeout_s
    pause = FIRST_POLL_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            cause = first_error(log_path, ignore=("gunicorn.",))
            raise AmlopsError(f"the inference server exited with code {process.returncode} before it "
                              f"answered{': ' + cause if cause else ''}; the end of its log ({log_path}):\n"
                              f"{log_tail(log_path, LOG_TAIL_LINES)}")
        if owns_port(process.pid, port) and (not probe or liveness(port)):
            return
        time.sleep(pause)
        pause = min(pause * 1.5, LAST_POLL_S)
    raise AmlopsError(f"the inference server did not answer on port {port} within {timeout_s:g} s; "
                      f"the end of its log ({log_path}):\n{log_tail(log_path, LOG_TAIL_LINES)}")


def liveness(port: int) -> bool:
    """GET / answers 200 within the deadline (bounded: a probe never hangs or fills memory)."""
    try:
        return bounded_http.request("GET", f"http://127.0.0.1:{port}/", timeout_s=LIVENESS_PROBE_S,
                                    max_body=LIVENESS_MAX_BODY).status == 200
    except AmlopsError:
        return False


def _port(deployment: Deployment) -> int:
    return int(deployment.scoring_uri.rsplit(":", 1)[1].split("/")[0])


def _ours(deployment: Deployment) -> bool:
    """The pid is still our server and it (or its worker) holds the listening socket of the deployment's
    port: a reused pid, or another server on that port, is not ours."""
    return process_alive(deployment.pid) and owns_port(deployment.pid, _port(deployment))


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


def _stop(deployment: Deployment, grace_s: float = STOP_GRACE_S) -> None:
    if _ours(deployment):
        stop_process_group(deployment.pid, grace_s)
    if deployment.log_path:
        shutil.rmtree(deployment.log_path.parent, ignore_errors=True)


def delete_local(ws: LocalWorkspace, name: str) -> Deployment:
    deployment = ws.get_deployment(name)
    with _name_lock(ws, name, lambda text: None, LIVENESS_TIMEOUT_S):
        deployment = ws.get_deployment(name)
        _stop(deployment)  # the full grace: gunicorn drains requests in flight (a router may still send some)
        ws.remove_deployment(name)
    return deployment
