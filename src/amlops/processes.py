"""Process helpers shared by the executor, the step supervisor and the local deployments (psutil, so the
same checks hold on Linux, macOS and Windows)."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psutil

STOP_GRACE_S = 10.0


def process_alive(pid: int | None, started_at: float | None = None) -> bool:
    """True if the process exists and is not a zombie (and, given its start time, is still that process
    rather than a later one that reused the pid)."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if started_at is not None and abs(process.create_time() - started_at) > 0.01:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), which tells it apart from a reused pid."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, ValueError):
        return ""


def listening_pids(port: int, host: str = "127.0.0.1") -> set[int]:
    """The pids of the processes listening on host:port (one socket may be shared by a server's workers).

    Our own servers are always found (psutil reads their sockets without privileges); a foreign one may
    show up without a pid on macOS, which is fine, since it is not ours either way."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS needs root for every process's sockets: ask only our servers
        return set()
    return {c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            and c.laddr.ip in (host, "0.0.0.0", "::") and c.pid}


def owns_port(pid: int, port: int, host: str = "127.0.0.1") -> bool:
    """True if pid (or one of its descendants) holds the listening socket on host:port."""
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except (psutil.Error, ValueError):
        return False
    for process in family:
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port
               and s.laddr.ip in (host, "0.0.0.0", "::") for s in sockets):
            return True
    return False


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, ValueError):
        return []


def stop_tree(processes: list[psutil.Process], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every process (Windows: TerminateProcess), then SIGKILL what is left after the grace period.

    psutil.Process remembers each process's start time, so a pid reused meanwhile is never signalled."""
    alive = _wait_ended(_signal(processes, "terminate"), grace_s)
    _wait_ended(_signal(alive, "kill"), 5)


def _wait_ended(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """The processes still running after timeout_s. A zombie has ended: a server started by an earlier command
    was adopted by init, which may reap it only seconds later (psutil.wait_procs waits for that reaping)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for process in processes:
            _reap(process.pid)
        processes = [p for p in processes if _running(p)]
        if not processes or time.monotonic() >= deadline:
            return processes
        time.sleep(0.02)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _signal(processes: list[psutil.Process], how: str) -> list[psutil.Process]:
    sent = []
    for process in processes:
        try:
            getattr(process, how)()
            sent.append(process)
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:
            sent.append(process)
    return sent


def stop_process_group(pid: int | None, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a process and all its descendants: SIGTERM, then SIGKILL after the grace period."""
    if not pid or not process_alive(pid):
        return
    try:
        leader = psutil.Process(pid)
    except psutil.Error:
        return
    stop_tree([leader, *descendants(pid)], grace_s)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if pid is our own child, so it does not linger as a zombie."""
    if os.name == "nt":
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        _reap(pid)
        time.sleep(0.05)
    return True


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)\b(?::.*)?$")


def first_error(path: Path, ignore: tuple[str, ...] = ()) -> str | None:
    """The first exception line of a log ("RuntimeError: no model here"), skipping those starting with
    `ignore`: with several workers failing, the cause may be further up than the log's tail shows."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return next((line.strip() for line in text if _EXCEPTION_LINE.match(line.strip())
                 and not line.strip().startswith(ignore)), None)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, indented to sit under an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text[-lines:])
