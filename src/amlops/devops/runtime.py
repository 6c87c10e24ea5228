"""The task runtime: protect secrets, read inputs, run one task, report, and always exit 0.

To the agent a non-zero exit code means the infrastructure failed; a task's own failure is reported
with `task.complete result=Failed` and a one-line message that says what to fix.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from amlops import __version__
from amlops.devops import secrets
from amlops.devops.inputs import Inputs, TaskSpec, read_inputs, task_directory, working_directory
from amlops.devops.summary import Summary
from amlops.devops.vso import Log, LogStream
from amlops.errors import AmlopsError

CACHE_VARIABLE = "AMLOPS_CACHE_DIR"
OWNER_PIPE_VARIABLE = "AMLOPS_OWNER_PIPE"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


class TaskFailed(AmlopsError):
    """The task ran to the end and its verdict is a failure (a gate, a smoke test): outputs are set."""


@dataclass
class TaskContext:
    """What a task entrypoint gets: validated inputs, the log, the agent's environment, its summary."""

    name: str
    spec: TaskSpec
    inputs: Inputs
    log: Log
    env: Mapping[str, str] = field(repr=False)
    summary: Summary

    def variable(self, name: str, default: str = "") -> str:
        """An agent variable (`Agent.TempDirectory`) from its environment form (`AGENT_TEMPDIRECTORY`)."""
        key = name.replace(".", "_").replace(" ", "_").upper()
        upper = {k.upper(): v for k, v in self.env.items()}
        return upper.get(key, default) or default

    @property
    def temp_dir(self) -> Path:
        return Path(self.variable("Agent.TempDirectory", tempfile.gettempdir()))

    @property
    def working_dir(self) -> Path:
        return Path(working_directory({k.upper(): v for k, v in self.env.items()}))

    def text(self, name: str) -> str:
        value = self.inputs[name]
        return "" if value is None else str(value)

    def output(self, name: str, value: object, secret: bool = False) -> None:
        if name not in self.spec.outputs:
            raise AssertionError(f"{name} is not an outputVariable of {self.name}'s task.json")
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = "" if value is None else str(value)
        self.log.setvariable(name, text, is_output=True, is_secret=secret)

    def existing_path(self, name: str, kind: str = "file") -> Path:
        """The filePath input `name`, which must exist as a file (or a folder)."""
        path = self.inputs[name]
        if path is None:
            raise AmlopsError(f"input '{name}' is empty; set it to a {kind} in the repository")
        ok = path.is_file() if kind == "file" else path.is_dir()
        if not ok:
            raise AmlopsError(f"{self.spec.input(name).label.lower()} not found: {path}; check the '{name}' "
                              f"input (relative paths start at the repository root, {self.working_dir})")
        return path

    def lineage_tags(self) -> dict[str, str]:
        """Tags tying runs and models to the build that made them."""
        names = {"build_id": "Build.BuildId", "build_number": "Build.BuildNumber",
                 "source_version": "Build.SourceVersion", "source_branch": "Build.SourceBranch",
                 "repository": "Build.Repository.Name", "pipeline": "Build.DefinitionName",
                 "project": "System.TeamProject", "collection_uri": "System.CollectionUri"}
        tags = {tag: self.variable(variable) for tag, variable in names.items()}
        return {tag: value for tag, value in tags.items() if value}


def main(argv: list[str], stream=None, environ: MutableMapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    _die_with_launcher(environ)
    env = dict(environ)
    log = Log(stream if stream is not None else sys.stdout,
              debug=env.get("SYSTEM_DEBUG", "").lower() == "true")
    name = argv[0] if argv else ""
    summary = Summary(name or "amlops")
    result, message = "Succeeded", ""
    signals = _CancelSignals()
    try:
        _protect(log, env, environ, name)
        log.info(f"amlops {__version__}: {name or '(no task name)'} on Python {sys.version.split()[0]}")
        message = _run(name, env, environ, log, summary)
    except AmlopsError as error:
        result, message = "Failed", _failure(log, error)
    except KeyboardInterrupt:
        result, message = "Cancelled", "the task was cancelled"
    except BaseException as error:  # noqa: B902 - the agent must always get task.complete
        result, message = "Failed", _unexpected(log, error)
    signals.quiet()
    _upload(log, summary, env, name)
    log.complete(result, message)
    signals.restore()
    return 0


def _die_with_launcher(environ: MutableMapping[str, str]) -> None:
    """Under the launcher, stdin is a pipe only the launcher holds: its end means the launcher was killed
    (the agent canceling the job hard). Then exit at once; each step's supervisor sees this process go and
    stops the step's whole process tree, and the run is marked Failed when the workspace is next opened."""
    if environ.pop(OWNER_PIPE_VARIABLE, None) != "1":
        return

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="launcher-watch").start()


class _CancelSignals:
    """SIGINT and SIGTERM (SIGBREAK on Windows) raise KeyboardInterrupt once; later ones are ignored.

    The agent cancels with SIGINT, then SIGTERM 7.5 s later, then kills the tree: the first signal
    starts the cancel (the Azure ML job's cancel is requested, not awaited) and a second one must not
    interrupt it, nor the task.complete that follows.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGBREAK")

    def __init__(self) -> None:
        self.cancelling = False
        self.previous: dict[int, object] = {}
        try:
            for number in (getattr(signal, name) for name in self.NAMES if hasattr(signal, name)):
                self.previous[number] = signal.signal(number, self._handle)
        except ValueError:  # not the main thread (an embedding caller): leave signals alone
            self.previous = {}

    def _handle(self, signum: int, frame: object) -> None:
        if not self.cancelling:
            self.cancelling = True
            raise KeyboardInterrupt

    def quiet(self) -> None:
        self.cancelling = True

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def _protect(log: Log, env: Mapping[str, str], environ: MutableMapping[str, str], name: str) -> None:
    """Mask every secret before anything is printed and keep them out of child processes."""
    from amlops.devops.tasks import secret_inputs

    hidden = secret_inputs(name)
    found = secrets.collect(env, hidden)
    for value in found + proxy_passwords(env):
        log.setsecret(value)
    removed = secrets.scrub(environ, found, hidden)
    log.debug(f"removed {len(removed)} secret variable(s) from the environment of child processes")


def proxy_passwords(env: Mapping[str, str]) -> list[str]:
    """Passwords inside the proxy URLs the launcher built from the agent's proxy: masked, but the variables
    stay, so the Azure SDK, training steps and the scoring server still go through the proxy."""
    found = []
    for name in PROXY_VARIABLES:
        try:
            password = urlsplit(env.get(name) or "").password
        except ValueError:
            password = None
        if password:
            found.append(unquote(password))
    return list(dict.fromkeys(found))


def _run(name: str, env: Mapping[str, str], environ: MutableMapping[str, str], log: Log,
         summary: Summary) -> str:
    from amlops.devops.tasks import TASKS

    entry = TASKS.get(name)
    if entry is None:
        raise AmlopsError(f"unknown task '{name}'; expected one of {', '.join(TASKS)}")
    spec = TaskSpec.load(task_directory(env))
    if spec.name != name:
        raise AmlopsError(f"the launcher asked for {name} but {spec.directory} holds {spec.name}; "
                          "reinstall the extension")
    inputs = read_inputs(spec, env)
    for warning in inputs.warnings:
        log.warning(warning)
    _set_cache_dir(env, environ)
    context = TaskContext(name=name, spec=spec, inputs=inputs, log=log, env=env, summary=summary)
    with _captured_output(log):
        message = entry(context)
    log.setprogress(100, "done")
    return message


@contextlib.contextmanager
def _captured_output(log: Log) -> Iterator[None]:
    """Route what the API and libraries print through the log (masked, neutralized) while a task runs."""
    stream = LogStream(log)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    try:
        yield
    finally:
        stream.flush()
        sys.stdout, sys.stderr = saved


def _set_cache_dir(env: Mapping[str, str], environ: MutableMapping[str, str]) -> None:
    """Let the local deployment cache its server environment under the agent's tools directory."""
    tools = env.get("AGENT_TOOLSDIRECTORY")
    if tools and not env.get(CACHE_VARIABLE):
        environ[CACHE_VARIABLE] = str(Path(tools) / "amlops" / "cache")


_LOCATED = re.compile(r"^(?P<path>[^\n]+?):(?P<line>\d+): (?P<text>.+)$")


def _failure(log: Log, error: AmlopsError) -> str:
    """Log each problem as an error issue; the first one (and a count) is the task's message.

    A problem that starts with `file:line: ` (a YAML problem) is logged with `sourcepath` and `linenumber`,
    so the Issues view links to the line."""
    problems = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    for problem in problems:
        found = _LOCATED.match(problem)
        if found and Path(found["path"]).is_file():
            log.logissue("error", problem, source_path=str(Path(found["path"]).resolve()),
                         line=int(found["line"]))
        else:
            log.error(problem)
    more = f" (and {len(problems) - 1} more problems above)" if len(problems) > 1 else ""
    return problems[0] + more


def _unexpected(log: Log, error: BaseException) -> str:
    if log.debug_enabled:
        log.info("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    text = str(error).strip().splitlines()
    line = f"unexpected error: {type(error).__name__}" + (f": {text[0]}" if text else "")
    hint = "" if log.debug_enabled else "; set the variable System.Debug to true to see the traceback"
    log.error(line + hint)
    return line


def _upload(log: Log, summary: Summary, env: Mapping[str, str], name: str) -> None:
    if len(summary.parts) < 2:
        return
    try:
        directory = Path(env.get("AGENT_TEMPDIRECTORY") or tempfile.gettempdir())
        path = summary.write(directory, name or "task")
        path.write_text(log.mask(path.read_text(encoding="utf-8")), encoding="utf-8")
        log.uploadsummary(str(path))
    except OSError as error:
        log.warning(f"could not write the run summary: {error}")
