"""A stand-in for the Azure Pipelines agent running a Node task, written from the agent's rules.

It builds the environment the agent gives a Node handler (inputs with task.json defaults, `$(macro)`
expansion, rooted filePath inputs, `INPUT_*`, `ENDPOINT_*` for an AzureRM connection and for
SystemVssConnection, variables, `SECRET_*`), starts the staged task folder with the real `node` and
the real launcher, and reads its output as the agent does (Command.TryParse and
CommandStringConvertor.Unescape): commands are found anywhere in a line, properties split on `;` and
the first `=`, and `%3B %0D %0A %5D` then `%AZP25` are decoded in properties and data alike.

Deliberately independent of amlops.devops.vso: a parser borrowed from the code under test would
agree with it by construction.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASK_NAMES = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci", "AmlSmokeTest", "AmlDeployOnlineEndpoint")
PREFIX = "##vso["
_SPECIAL = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"))
# Variables the test process may carry that the agent would not give a task.
_FOREIGN = ("INPUT_", "ENDPOINT_", "SECRET_", "AGENT_", "SYSTEM_", "BUILD_", "AMLOPS_", "VSTS_", "PYTEST_")


def unescape(text: str) -> str:
    for escaped, token in _SPECIAL:
        text = text.replace(escaped, token)
    return text.replace("%AZP25", "%")


class Properties(dict):
    """Command properties: keys compared ignoring case, as the agent's dictionary does."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)


@dataclass
class Command:
    area: str
    event: str
    properties: Properties
    data: str

    @property
    def name(self) -> str:
        return f"{self.area}.{self.event}"


def parse_command(line: str) -> Command | None:
    start = line.find(PREFIX)
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    info = line[start + len(PREFIX):end]
    space = info.find(" ")
    name = info if space < 0 else info[:space]
    parts = [part for part in name.split(".") if part]
    if len(parts) != 2:
        return None
    properties = Properties()
    if space > 0:
        for pair in (p for p in info[space + 1:].split(";") if p):
            key_value = [p for p in pair.split("=", 1) if p]
            if len(key_value) == 2:
                properties[key_value[0]] = unescape(key_value[1])
    return Command(parts[0], parts[1], properties, unescape(line[end + 1:]))


def env_name(variable: str) -> str:
    """VarUtil.ConvertToEnvVariableFormat: upper case, `.` and space to `_`."""
    return variable.replace(".", "_").replace(" ", "_").upper()


@dataclass
class Connection:
    """An AzureRM service connection as the agent exports it."""

    scheme: str
    parameters: dict
    data: dict = field(default_factory=lambda: {"subscriptionId": "00000000-1111-2222-3333-444444444444",
                                                "subscriptionName": "amlops-test", "environment": "AzureCloud",
                                                "scopeLevel": "Subscription"})
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    url: str = "https://management.azure.com/"

    def environment(self) -> dict[str, str]:
        key = self.id
        env = {f"ENDPOINT_URL_{key}": self.url,
               f"ENDPOINT_AUTH_{key}": json.dumps({"parameters": self.parameters, "scheme": self.scheme}),
               f"ENDPOINT_AUTH_SCHEME_{key}": self.scheme,
               f"ENDPOINT_DATA_{key}": json.dumps(self.data)}
        env.update({f"ENDPOINT_AUTH_PARAMETER_{key}_{env_name(k)}": v for k, v in self.parameters.items()})
        env.update({f"ENDPOINT_DATA_{key}_{env_name(k)}": v for k, v in self.data.items()})
        return env


def service_principal(secret: str) -> Connection:
    return Connection("ServicePrincipal", {"tenantid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                                           "serviceprincipalid": "11111111-2222-3333-4444-555555555555",
                                           "authenticationType": "spnKey", "serviceprincipalkey": secret})


@dataclass
class TaskRun:
    step: str
    exit_code: int
    result: str
    message: str
    outputs: dict[str, str]
    secrets: list[str]
    issues: list[tuple[str, str]]
    progress: list[int]
    summaries: list[str]
    log: list[str]
    stdout: str
    stderr: str
    seconds: float
    first_line_seconds: float | None
    uploads: list[str] = field(default_factory=list)
    test_results: list[tuple[str, str]] = field(default_factory=list)
    summary_titles: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything a person sees in the agent's log for this step (masked), for asserts and failures."""
        return "\n".join(self.log + [f"{kind}: {text}" for kind, text in self.issues] + [self.message])

    def leaks(self, secret: str) -> list[str]:
        """Raw output lines holding `secret` other than the commands that hand it to the agent to mask."""
        lines = (self.stdout + "\n" + self.stderr).splitlines()
        allowed = ("##vso[task.setsecret]", "##vso[task.setvariable ")
        return [line for line in lines if secret in line and not (
            line.startswith(allowed[0]) or (line.startswith(allowed[1]) and "issecret=true" in line))]


class Agent:
    """One job's agent: variables persist across steps, as do output variables (`<step>.<name>`)."""

    def __init__(self, work: Path, tools: Path, sources: Path, debug: bool = False):
        self.work, self.tools, self.sources = Path(work), Path(tools), Path(sources)
        self.temp = self.work / "_temp"
        self.temp.mkdir(parents=True, exist_ok=True)
        self.variables: dict[str, str] = {}
        self.secret_variables: dict[str, str] = {}
        self.set_variables({
            "Agent.ToolsDirectory": str(self.tools), "Agent.TempDirectory": str(self.temp),
            "Agent.WorkFolder": str(self.work), "Agent.Version": "4.261.0", "Agent.OS": sys.platform,
            "Build.SourcesDirectory": str(self.sources), "Build.Repository.LocalPath": str(self.sources),
            "System.DefaultWorkingDirectory": str(self.sources), "Build.BuildId": "4711",
            "Build.BuildNumber": "20261129.1", "Build.SourceVersion": "0123456789abcdef",
            "Build.SourceBranch": "refs/heads/main", "Build.Repository.Name": "amlops",
            "Build.DefinitionName": "amlops-ci", "System.TeamProject": "mlops",
            "System.CollectionUri": "https://dev.azure.com/contoso/", "System.JobId": str(uuid.uuid4()),
            "System.Debug": "true" if debug else "false"})
        self.access_token = "job-token-" + uuid.uuid4().hex

    def set_variables(self, values: dict[str, str]) -> None:
        self.variables.update({name.lower(): (name, value) for name, value in values.items()})

    def variable(self, name: str) -> str | None:
        entry = self.variables.get(name.lower()) or self.secret_variables.get(name.lower())
        return entry[1] if entry else None

    def expand(self, value: str) -> str:
        """Macro expansion `$(name)`: known variables replaced, unknown references left as they are."""
        out, index = [], 0
        while True:
            start = value.find("$(", index)
            end = value.find(")", start + 2) if start >= 0 else -1
            if start < 0 or end < 0:
                return "".join(out) + value[index:]
            found = self.variable(value[start + 2:end])
            out.append(value[index:start] + (found if found is not None else value[start:end + 1]))
            index = end + 1

    def inputs_for(self, task_dir: Path, given: dict[str, str]) -> dict[str, str]:
        task = json.loads((Path(task_dir) / "task.json").read_text(encoding="utf-8-sig"))
        specs = {spec["name"].lower(): spec for spec in task["inputs"]}
        values = {spec["name"]: _default(spec) for spec in task["inputs"]}
        for name, value in given.items():
            if name.lower() not in specs:
                raise KeyError(f"{task['name']} has no input {name}")
            values[specs[name.lower()]["name"]] = str(value)
        values = {name: self.expand(value.strip()) for name, value in values.items()}
        for spec in task["inputs"]:
            if spec["type"] == "filePath":
                values[spec["name"]] = os.path.join(str(self.sources), values[spec["name"]])
        return values

    def environment(self, task_dir: Path, inputs: dict[str, str], connections=(), path: str | None = None,
                    extra: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> dict[str, str]:
        """`unset`: prefixes of the machine's variables the agent's host would not have (`PIP_`)."""
        foreign = _FOREIGN + tuple(prefix.upper() for prefix in unset)
        env = {key: value for key, value in os.environ.items() if not key.upper().startswith(foreign)}
        env["PATH"] = path if path is not None else _path_with_uv()
        env.update({env_name(name): value for name, value in self.variables.values()})
        env["VSTS_PUBLIC_VARIABLES"] = json.dumps([name for name, _ in self.variables.values()])
        env.update({f"SECRET_{env_name(name)}": value for name, value in self.secret_variables.values()})
        env["VSTS_SECRET_VARIABLES"] = json.dumps([name for name, _ in self.secret_variables.values()])
        env.update({f"INPUT_{env_name(name)}": value for name, value in self.inputs_for(task_dir, inputs).items()})
        for connection in connections:
            env.update(connection.environment())
        env.update({"ENDPOINT_URL_SYSTEMVSSCONNECTION": "https://dev.azure.com/contoso/",
                    "ENDPOINT_AUTH_SYSTEMVSSCONNECTION": json.dumps(
                        {"parameters": {"AccessToken": self.access_token}, "scheme": "OAuth"}),
                    "ENDPOINT_AUTH_SCHEME_SYSTEMVSSCONNECTION": "OAuth",
                    "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN": self.access_token})
        env.update(extra or {})
        return env

    def run(self, task_dir: Path, inputs: dict[str, str], step: str = "", connections=(),
            path: str | None = None, extra: dict[str, str] | None = None, timeout: float = 1200,
            unset: tuple[str, ...] = (), on_line=None) -> TaskRun:
        """Run one task step with the real node and launcher; output variables become `<step>.<name>`.

        `on_line(process, line)` sees each stdout line as it comes (to cancel the step as the agent does)."""
        env = self.environment(task_dir, inputs, connections, path, extra, unset)
        node = shutil.which("node") or "node"
        started = time.perf_counter()
        process = subprocess.Popen([node, str(Path(task_dir) / "launcher.js")], cwd=self.sources, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines: list[tuple[float, str]] = []
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
        reader.start()
        for raw in process.stdout:
            lines.append((time.perf_counter() - started, raw.decode("utf-8").rstrip("\r\n")))
            if on_line is not None:
                on_line(process, lines[-1][1])
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join()
        return self._digest(step, code, lines, b"".join(errors).decode("utf-8", "replace"),
                            time.perf_counter() - started)

    def _digest(self, step: str, code: int, lines: list[tuple[float, str]], stderr: str,
                seconds: float) -> TaskRun:
        run = TaskRun(step, code, "", "", {}, [], [], [], [], [], "\n".join(t for _, t in lines), stderr, seconds,
                      first_line_seconds=next((at for at, text in lines if text.startswith("amlops ")), None))
        for _, text in lines + [(0.0, line) for line in stderr.splitlines()]:
            command = parse_command(text)
            if command is None:
                run.log.append(_mask(text, run.secrets))
            else:
                self._obey(run, command)
        run.issues = [(kind, _mask(message, run.secrets)) for kind, message in run.issues]
        run.message = _mask(run.message, run.secrets)
        if not run.result:
            run.result = "Succeeded" if code == 0 else "Failed"
        return run

    def _obey(self, run: TaskRun, command: Command) -> None:
        props, data = command.properties, command.data
        if command.name == "task.setsecret":
            run.secrets.append(data)
        elif command.name == "task.setvariable":
            name = props.get("variable")
            if (props.get("issecret") or "").lower() == "true":
                run.secrets.append(data)
            if (props.get("isoutput") or "").lower() == "true":
                run.outputs[name] = data
                name = f"{run.step}.{name}" if run.step else name
            target = self.secret_variables if (props.get("issecret") or "").lower() == "true" else self.variables
            target[name.lower()] = (name, data)
        elif command.name == "task.complete":
            run.result, run.message = props.get("result") or "Succeeded", data
        elif command.name == "task.logissue":
            run.issues.append((props.get("type"), data))
        elif command.name == "task.setprogress":
            run.progress.append(int(props.get("value")))
        elif command.name == "task.uploadsummary":
            run.summaries.append(_mask(Path(data).read_text(encoding="utf-8"), run.secrets))
            run.summary_titles.append(Path(data).stem)  # the tab's title is the file's name
        elif command.name == "task.uploadfile":
            run.uploads.append(data)
        elif command.name == "results.publish":  # PublishTestResults reads the files named in resultFiles
            run.test_results.append((props.get("type"), props.get("resultFiles")))


def _default(spec: dict) -> str:
    value = spec.get("defaultValue", "")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mask(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def _path_with_uv() -> str:
    """PATH as an activated dev virtualenv has it, so the launcher finds uv there when it is installed."""
    path = os.environ.get("PATH", "")
    scripts = Path(sys.executable).parent
    if (scripts / ("uv.exe" if os.name == "nt" else "uv")).is_file():
        return str(scripts) + os.pathsep + path
    return path
