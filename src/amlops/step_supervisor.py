"""The parent of every step process: its whole process tree dies with the executor.

`python -m amlops.step_supervisor GRACE_S CWD -- COMMAND...` starts COMMAND (its own session) and waits for
it. Its stdin is a pipe whose other end only the executor holds: end of file there means the executor
canceled the step, or died (even by SIGKILL, when the kernel closes its pipes). Then every descendant gets
SIGTERM and, after GRACE_S, SIGKILL, and the supervisor exits. When COMMAND ends by itself, whatever it
left running in the background is stopped the same way, as Azure ML ends a job's container.

Descendants are found by walking the tree; on Linux the supervisor is also a child subreaper, so a
process that called setsid and whose parent exited is re-parented here and still found. On other systems
the tree is sampled twice a second and every process seen is remembered (psutil checks its start time, so a
reused pid is never signalled).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

POLL_S = 0.2
EXIT_GRACE_S = 2.0  # for background processes left behind by a command that ended by itself


def main(argv: list[str]) -> int:
    import psutil

    grace_s, cwd, command = float(argv[0]), argv[1], argv[3:]
    _become_subreaper()
    stop = threading.Event()
    threading.Thread(target=_watch_executor, args=(stop,), daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    step = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    me = psutil.Process()
    while not stop.is_set():
        _remember(me, seen)
        if step.poll() is not None:
            _stop_all(me, seen, EXIT_GRACE_S)
            return step.returncode if step.returncode >= 0 else 128 - step.returncode
        try:  # wakes as soon as the step ends (a stop waits for the end of the poll interval)
            step.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
    _stop_all(me, seen, grace_s)
    step.wait()
    return 128 + signal.SIGTERM


def _become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _watch_executor(stop: threading.Event) -> None:
    """Block on stdin; end of file (or any error) means the executor is gone or wants the step stopped."""
    try:
        while os.read(0, 4096):  # the raw descriptor: a buffered stdin would hold a lock at exit
            pass
    except OSError:
        pass
    stop.set()


def _remember(me, seen: dict) -> None:
    for process in me.children(recursive=True):
        seen.setdefault(process.pid, process)


def _stop_all(me, seen: dict, grace_s: float) -> None:
    from amlops.processes import stop_tree

    _remember(me, seen)
    stop_tree([p for p in seen.values() if p.is_running()], grace_s)
    _remember(me, seen)  # anything forked while the first ones were stopping
    stop_tree([p for p in seen.values() if p.is_running()], 0)
    _reap_orphans()


def _reap_orphans() -> None:
    """Collect re-parented descendants (we are their subreaper) so none stays a zombie."""
    if os.name == "nt":
        return
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
