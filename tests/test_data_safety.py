"""Data safety (issue 12): names are names, every workspace path stays inside, inputs are regular files
inside the repository, YAML is bounded, and a bad input is one line that writes nothing.

Each test is named after the case it reproduces; each failed on the code before this change.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from amlops import api
from amlops.cli import main
from amlops.errors import AmlopsError
from amlops.workspace.local.paths import OutsideWorkspace, inside
from amlops.workspace.local.workspace import LocalWorkspace
from support import REPO, edit

TASKS_DIR = REPO / "tasks"


# -- helpers -------------------------------------------------------------------------------------------
def listing(*folders: Path) -> dict[str, tuple]:
    """Every file and folder under `folders` with its size, content hash and mtime: any write shows."""
    seen: dict[str, tuple] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            seen[str(path)] = (info.st_size if path.is_file() else 0, digest, info.st_mtime_ns)
    return seen


def cli(*args: str, workspace: Path | None = None):
    env = {"AMLOPS_WORKSPACE": str(workspace)} if workspace else {}
    return CliRunner().invoke(main, list(args), env=env)


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    return result.output


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside the workspace that must survive every bad name."""
    folder = tmp_path / "victim"
    (folder / "1").mkdir(parents=True)
    (folder / "keep.txt").write_text("precious")
    (folder / "1" / "keep.txt").write_text("precious")
    return folder


@pytest.fixture
def published(workspace: LocalWorkspace, mini_project: Path) -> LocalWorkspace:
    api.publish(workspace, mini_project / "pipeline.yml")
    return workspace


# -- names at the edge -----------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--name", "--version"])
def test_publish_name_or_version_that_is_a_path_deletes_nothing_outside(mini_project, tmp_path, victim, option):
    workspace = tmp_path / "ws"
    for value in (str(victim), "../victim", "../../victim"):
        before = listing(victim)
        result = cli("publish", str(mini_project / "pipeline.yml"), option, value, workspace=workspace)
        assert f"{option} " in one_line_error(result)
        assert listing(victim) == before
    assert not workspace.exists()  # refused while parsing: nothing opened, nothing created


def test_models_register_name_that_is_a_path_deletes_nothing_outside(mini_project, tmp_path, victim):
    workspace = tmp_path / "ws"
    for name in ("..", str(victim), "../victim", "", "."):
        result = cli("models", "register", name, "--path", str(mini_project / "data"), workspace=workspace)
        assert "a model name may contain only" in one_line_error(result)
    assert (victim / "1" / "keep.txt").read_text() == "precious"


def test_model_x_slash_1_cannot_collide_with_model_x_version_1(workspace, mini_project):
    first = workspace.register_model("x", mini_project / "data", {}, {}, None)
    with pytest.raises(AmlopsError, match="a model name may contain only"):
        workspace.register_model("x/1", mini_project / "code", {}, {}, None)
    assert sorted(p.name for p in first.path.iterdir()) == ["numbers.csv"]


def test_datastore_upload_path_or_datastore_outside_overwrites_nothing(mini_project, tmp_path, victim):
    workspace = tmp_path / "ws"
    data = str(mini_project / "data" / "numbers.csv")
    cases = [("--path", "../../../victim/keep.txt"), ("--path", str(victim / "keep.txt")),
             ("--datastore", "../../victim"), ("--path", "a//b"), ("--path", "a/./b")]
    for option, value in cases:
        result = cli("datastore", "upload", "--file", data, option, value, workspace=workspace)
        assert f"{option} " in one_line_error(result)
    assert (victim / "keep.txt").read_text() == "precious"
    uri = cli("datastore", "upload", "--file", data, "--path", "nested/folder/n.csv", workspace=workspace).output
    assert uri.strip() == "azureml://datastores/training_data/paths/nested/folder/n.csv"


@pytest.mark.parametrize("name", ["a/b", "../../x", "UPPER", "under_score", "double--hyphen", "-start", "x" * 64])
def test_deployment_name_must_follow_the_container_instances_rule(tmp_path, name):
    result = cli("deploy", "m:1", "--name", name, workspace=tmp_path / "ws")
    assert "a deployment name may contain only lowercase letters" in one_line_error(result)
    assert not (tmp_path / "ws").exists() and not (tmp_path / "x").exists()


def test_the_same_rule_holds_in_the_python_api(published):
    with pytest.raises(AmlopsError, match="deployment_name 'a/b'"):
        api.deploy(published, model_name="m", model_version=1, deployment_name="a/b", scoring_folder=".")
    with pytest.raises(AmlopsError, match="pipeline_name '../mini'"):
        api.submit(published, "../mini")
    with pytest.raises(AmlopsError, match="version '..'"):
        api.publish(published, "pipeline.yml", version="..")


def test_huge_model_version_number_is_one_line(tmp_path):
    result = cli("models", "show", "m:99999999999999999999999", workspace=tmp_path / "ws")
    assert "a model version is a whole number from 1 to 9223372036854775807" in one_line_error(result)


def test_overlong_pipeline_name_is_one_line(mini_project, tmp_path):
    result = cli("publish", str(mini_project / "pipeline.yml"), "--name", "p" * 300, workspace=tmp_path / "ws")
    assert "(300 characters)" in one_line_error(result)


def test_job_and_output_names_are_not_paths(mini_project, workspace):
    edit(mini_project / "pipeline.yml", "  score:\n", "  ../../escape:\n")
    with pytest.raises(AmlopsError, match="job name '../../escape' is invalid"):
        api.publish(workspace, mini_project / "pipeline.yml")
    edit(mini_project / "pipeline.yml", "  ../../escape:\n", "  score:\n")
    edit(mini_project / "components" / "score.yml", "outputs:\n  metrics:", "outputs:\n  ../metrics:")
    with pytest.raises(AmlopsError, match="output name '../metrics' is invalid"):
        api.publish(workspace, mini_project / "pipeline.yml")


# -- a run that did not complete -------------------------------------------------------------------------
def test_models_register_from_a_failed_run_is_refused(published, mini_project):
    code = published.get_pipeline("mini-pipeline").snapshot.parent / "code"
    edit(code / "score.py", "import", "raise SystemExit(3)\nimport")
    run = api.submit(published, "mini-pipeline", reuse=False)
    assert run.status == "Failed" and "model" in run.outputs
    result = cli("models", "register", "m", "--run", run.id, workspace=published.root)
    assert f"--run {run.id}: the run ended Failed" in one_line_error(result)
    assert published.list_models("m") == []


# -- inputs ----------------------------------------------------------------------------------------------
@pytest.fixture
def bounded_writes():
    """Files this process writes stay under 64 MiB while the test runs: a regression that copies /dev/zero fails
    with EFBIG instead of filling the disk (it once wrote 71 GB)."""
    resource = pytest.importorskip("resource")
    import signal

    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024, limits[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    signal.signal(signal.SIGXFSZ, previous)


def test_uri_file_input_of_dev_zero_is_refused(mini_project, workspace, bounded_writes):
    edit(mini_project / "pipeline.yml", "path: ./data/numbers.csv", "path: /dev/zero")
    with pytest.raises(AmlopsError, match="pipeline input 'data': /dev/zero is a character device"):
        api.publish(workspace, mini_project / "pipeline.yml")
    assert not (workspace.root / "snapshots").exists()


def test_fifo_or_socket_in_a_code_folder_is_refused_without_hanging(mini_project, workspace, tmp_path):
    os.mkfifo(mini_project / "code" / "pipe")
    with pytest.raises(AmlopsError, match="pipe is a named pipe \\(fifo\\), not a regular file or folder"):
        api.publish(workspace, mini_project / "pipeline.yml")
    (mini_project / "code" / "pipe").unlink()
    short = Path(f"/tmp/amlops-sock-{os.getpid()}")  # AF_UNIX paths are short
    short.mkdir(exist_ok=True)
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(short / "s"))
            os.symlink(short / "s", mini_project / "code" / "server.sock")
            with pytest.raises(AmlopsError, match="is a socket"):
                api.publish(workspace, mini_project / "pipeline.yml")
    finally:
        shutil.rmtree(short)


def test_input_outside_the_repository_never_makes_root_the_snapshot_root(mini_project, workspace, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    shutil.copy(mini_project / "data" / "numbers.csv", outside)
    relative = os.path.relpath(outside, mini_project)
    edit(mini_project / "pipeline.yml", "path: ./data/numbers.csv", f"path: {relative}")
    with pytest.raises(AmlopsError, match=r"outside the pipeline's repository .*--set inputs.data=PATH"):
        api.publish(workspace, mini_project / "pipeline.yml")
    edit(mini_project / "pipeline.yml", f"path: {relative}", "path: ../../../../../../../../etc/passwd")
    with pytest.raises(AmlopsError, match="outside the pipeline's repository"):
        api.publish(workspace, mini_project / "pipeline.yml")
    assert not (workspace.root / "snapshots").exists()


def test_input_outside_the_repository_given_explicitly_with_set(mini_project, workspace, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    shutil.copy(mini_project / "data" / "numbers.csv", outside)
    published = api.publish(workspace, mini_project / "pipeline.yml")
    snapshot = sorted(p.name for p in published.snapshot.parent.iterdir())
    assert snapshot == ["code", "components", "data", "pipeline.yml"]
    run = api.submit(workspace, published.name, overrides={"data": str(outside)})
    assert run.status == "Completed" and run.parameters["data"] == str(outside)


def test_repository_is_the_git_work_tree(mini_project, workspace, tmp_path):
    """Inside a git work tree, data beside the pipeline's folder is inside the repository."""
    (mini_project / ".git").mkdir()
    (mini_project / "pipelines").mkdir()
    shutil.move(mini_project / "pipeline.yml", mini_project / "pipelines" / "pipeline.yml")
    text = (mini_project / "pipelines" / "pipeline.yml").read_text().replace("./", "../")
    (mini_project / "pipelines" / "pipeline.yml").write_text(text)
    published = api.publish(workspace, mini_project / "pipelines" / "pipeline.yml")
    assert api.submit(workspace, published.name).status == "Completed"  # the snapshot is its own repository


def test_symlink_loop_in_an_input_folder_is_one_line(mini_project, workspace):
    folder = mini_project / "data" / "more"
    folder.mkdir()
    os.symlink(folder / "b", folder / "a")
    os.symlink(folder / "a", folder / "b")
    edit(mini_project / "pipeline.yml", "type: uri_file\n    path: ./data/numbers.csv",
         "type: uri_folder\n    path: ./data")
    with pytest.raises(AmlopsError, match="a symlink loop"):
        api.publish(workspace, mini_project / "pipeline.yml")


def test_self_symlinked_code_folder_leaves_no_half_written_snapshot(mini_project, workspace):
    os.symlink(mini_project / "code", mini_project / "code" / "again")
    result = cli("publish", str(mini_project / "pipeline.yml"), workspace=workspace.root)
    assert "again: a symlink loop" in one_line_error(result)
    assert not (workspace.root / "snapshots").exists() and workspace.list_pipelines() == []


def test_symlink_out_of_the_repository_is_not_copied(mini_project, workspace, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    os.symlink(secret, mini_project / "code" / "key")
    with pytest.raises(AmlopsError, match="is a symlink to .*id_rsa, outside the pipeline's repository"):
        api.publish(workspace, mini_project / "pipeline.yml")


def test_a_failed_copy_leaves_no_staging_folder(mini_project, workspace, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("amlops.workspace.local.snapshot.shutil.copy2", full)
    with pytest.raises(OSError):
        api.publish(workspace, mini_project / "pipeline.yml")
    with pytest.raises(OSError):
        workspace.register_model("m", mini_project / "data", {}, {}, None)
    monkeypatch.undo()
    left = [p for p in workspace.root.rglob("*") if not p.name.startswith("workspace.db")]
    assert {str(p.relative_to(workspace.root)) for p in left} <= {"models", "snapshots", "objects"}  # empty


# -- YAML ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, text, words", [
    ("a list as a YAML key", "[a, b]: 1\n", "a key must be plain text, not a list"),
    ("settings as a list", None, "'settings' must be a mapping"),
    ("100k nested [", "x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests deeper than 64 levels"),
    ("alias bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi")),
     "expands to more than 100000 values"),
    ("too many bytes", "# " + "x" * (1 << 20) + "\n", "larger than 1024 KiB"),
    ("an impossible date", "when: 2024-13-45\n", "invalid YAML: month must be in 1..12"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_bad_yaml_is_one_line(mini_project, tmp_path, case, text, words):
    pipeline = mini_project / "pipeline.yml"
    if text is None:
        edit(pipeline, "settings:\n  default_compute: azureml:cpu-cluster", "settings: [1, 2]")
    else:
        pipeline.write_text(text)
    result = cli("publish", str(pipeline), workspace=tmp_path / "ws")
    assert words in one_line_error(result) or words in result.output


def test_job_inputs_of_the_wrong_type_are_one_line(mini_project, tmp_path):
    edit(mini_project / "pipeline.yml", "    inputs:\n      model:", "    inputs: [1, 2]\n    unused:\n      model:")
    result = cli("publish", str(mini_project / "pipeline.yml"), workspace=tmp_path / "ws")
    assert "'inputs' of job 'score' must be a mapping" in result.output and "Traceback" not in result.output


# -- the workspace folder --------------------------------------------------------------------------------
def test_empty_workspace_db_over_existing_files_is_not_a_new_workspace(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "workspace.db").touch()
    result = cli("runs", "list", workspace=folder)
    assert "is not an amlops workspace: it has an empty workspace.db but holds other files (notes.txt)" in \
        one_line_error(result)
    assert (folder / "workspace.db").stat().st_size == 0 and (folder / "notes.txt").read_text() == "mine"
    (folder / "workspace.db").unlink()
    assert "it has no workspace.db" in one_line_error(cli("runs", "list", workspace=folder))
    assert cli("runs", "list", workspace=tmp_path / "new").exit_code == 0


def test_a_moved_workspace_keeps_working(published, mini_project, tmp_path):
    run = api.submit(published, "mini-pipeline")
    model = published.register_model("m", published.run_output(run, "model"), {}, {}, run.id)
    moved = tmp_path / "moved"
    published.db.close()
    shutil.move(published.root, moved)
    again = LocalWorkspace(moved)
    assert again.get_model("m").path == moved / "models" / "m" / "1" and model.path != again.get_model("m").path
    assert again.get_pipeline("mini-pipeline").snapshot.is_file()
    second = api.submit(again, "mini-pipeline")
    assert second.status == "Completed" and all(s.reused_from == run.id for s in second.steps)
    assert Path(second.outputs["model"]).is_relative_to(moved)
    stored = again.db.execute("SELECT path FROM models").fetchone()[0]
    assert stored == "models/m/1"


def test_a_copied_workspace_written_by_an_older_version_is_rebased(published, tmp_path):
    """A version-0 database (absolute paths) copied elsewhere: its paths are made relative to the copy."""
    run = api.submit(published, "mini-pipeline")
    published.register_model("m", published.run_output(run, "model"), {}, {}, run.id)
    old = str(published.root)
    db = published.db
    db.execute("UPDATE models SET path = ? || '/' || path", (old,))
    db.execute("UPDATE pipelines SET snapshot = ? || '/' || snapshot", (old,))
    db.execute("UPDATE steps SET log_path = ? || '/' || log_path", (old,))
    db.execute("UPDATE runs SET outputs = replace(outputs, '\"runs/', '\"' || ? || '/runs/')", (old,))
    db.execute("PRAGMA user_version = 0")
    db.close()
    copy = tmp_path / "copy"
    shutil.copytree(published.root, copy)
    shutil.rmtree(published.root)
    again = LocalWorkspace(copy)
    assert again.get_model("m").path == copy / "models" / "m" / "1"
    assert Path(again.get_run(run.id).outputs["model"]).is_relative_to(copy)
    assert all(s.log_path.is_relative_to(copy) for s in again.get_run(run.id).steps)
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == 1


# -- defence in depth ------------------------------------------------------------------------------------
def test_inside_refuses_every_way_out(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "models").mkdir()
    os.symlink(tmp_path, root / "models" / "link")
    for parts in [("..",), ("models", ".."), ("/etc",), ("a/b",), ("",), (".",), ("models", "link", "x")]:
        with pytest.raises(OutsideWorkspace):
            inside(root, *parts)
    assert inside(root, "models", "m", "1") == root / "models" / "m" / "1"


def test_a_symlinked_workspace_folder_cannot_redirect_writes(workspace, mini_project, tmp_path, victim):
    (workspace.root / "datastores").mkdir()
    os.symlink(victim, workspace.root / "datastores" / "training_data")
    with pytest.raises(OutsideWorkspace):
        workspace.upload_to_datastore("training_data", mini_project / "data" / "numbers.csv", "keep.txt")
    assert (victim / "keep.txt").read_text() == "precious"


def test_a_failed_deployment_leaves_no_empty_folder(published, mini_project, monkeypatch):
    run = api.submit(published, "mini-pipeline")
    published.register_model("m", published.run_output(run, "model"), {}, {}, run.id)
    scoring = mini_project / "scoring"
    scoring.mkdir()
    (scoring / "score.py").write_text("def init(): pass\n")
    os.mkfifo(scoring / "pipe")
    from amlops.deploy.local import target

    monkeypatch.setattr(target, "server_python", lambda requirements, on_info: Path(sys.executable))
    with pytest.raises(AmlopsError, match="pipe is a named pipe"):  # refused, where copying it would hang
        api.deploy(published, model_name="m", model_version=None, deployment_name="d", scoring_folder=scoring)
    deployments = published.root / "deployments"
    assert not deployments.exists() or not any(deployments.iterdir())


# -- every name, everywhere ------------------------------------------------------------------------------
BAD_NAMES = ["..", "/abs", "a/b", "", ".", "n" * 300, "a\nb"]

CLI_NAMES = {  # how each command takes a name; {} is where the bad name goes
    "publish --name": ["publish", "{pipeline}", "--name", "{}"],
    "publish --version": ["publish", "{pipeline}", "--version", "{}"],
    "submit PIPELINE": ["submit", "{}"],
    "submit --version": ["submit", "mini-pipeline", "--version", "{}"],
    "submit --experiment": ["submit", "mini-pipeline", "--experiment", "{}"],
    "runs show RUN_ID": ["runs", "show", "{}"],
    "models register NAME": ["models", "register", "{}", "--path", "{data}"],
    "models register --run": ["models", "register", "m", "--run", "{}"],
    "models register --output": ["models", "register", "m", "--run", "r", "--output", "{}"],
    "models list NAME": ["models", "list", "{}"],
    "models show MODEL": ["models", "show", "{}"],
    "models show MODEL:VERSION": ["models", "show", "m:{}"],
    "datastore upload --datastore": ["datastore", "upload", "--file", "{data}", "--datastore", "{}"],
    "datastore upload --path": ["datastore", "upload", "--file", "{data}", "--path", "{}"],
    "deploy MODEL": ["deploy", "{}", "--name", "d"],
    "deploy --name": ["deploy", "m", "--name", "{}"],
    "deployments show NAME": ["deployments", "show", "{}"],
    "deployments logs NAME": ["deployments", "logs", "{}"],
    "deployments delete NAME": ["deployments", "delete", "{}"],
    "run --model-name": ["run", "{pipeline}", "--model-name", "{}"],
    "run --deployment-name": ["run", "{pipeline}", "--deployment-name", "{}"],
}


@pytest.fixture(scope="module")
def walk_setup(tmp_path_factory):
    """A workspace with a published pipeline, and a sentinel folder beside it."""
    base = tmp_path_factory.mktemp("walk")
    project = base / "project"
    shutil.copytree(REPO / "tests" / "mini_project", project)
    workspace = LocalWorkspace(base / "ws")
    api.publish(workspace, project / "pipeline.yml")
    workspace.db.close()
    (base / "abs").mkdir()
    (base / "abs" / "keep.txt").write_text("precious")
    return base, project


def _bad(value: str, base: Path) -> str:
    return str(base / "abs") if value == "/abs" else value


@pytest.mark.parametrize("value", BAD_NAMES, ids=["dotdot", "abs", "a-slash-b", "empty", "dot", "300", "newline"])
@pytest.mark.parametrize("command", sorted(CLI_NAMES))
def test_every_cli_name_refuses_paths(walk_setup, command, value):
    if command == "datastore upload --path" and value == "a/b":
        pytest.skip("a path inside a datastore may have folders (test_datastore_upload_path_or_datastore_...)")
    base, project = walk_setup
    fill = {"pipeline": str(project / "pipeline.yml"), "data": str(project / "data" / "numbers.csv")}
    args = [part.format(**fill) if part != "{}" and "{}" not in part else part.replace("{}", _bad(value, base))
            for part in CLI_NAMES[command]]
    before = listing(base)
    result = CliRunner().invoke(main, args, env={"AMLOPS_WORKSPACE": str(base / "ws")})
    one_line_error(result)
    assert listing(base) == before


TASK_NAMES = {
    "AmlPublishPipeline": ["pipelineName", "pipelineVersion"],
    "AmlRunPipeline": ["pipelineName", "pipelineVersion", "experimentName", "modelName", "modelOutput",
                       "metricsOutput"],
    "AmlDeployAci": ["modelName", "modelVersion", "deploymentName"],
}
REQUIRED = {("AmlRunPipeline", "pipelineName"), ("AmlRunPipeline", "modelName"), ("AmlDeployAci", "modelName"),
            ("AmlDeployAci", "deploymentName")}
TASK_CASES = [(task, name, value) for task, inputs in TASK_NAMES.items() for name in inputs
              for value in BAD_NAMES
              # an empty optional input means "the default", which is not a bad name
              if value or (task, name) in REQUIRED]


@pytest.mark.parametrize("task, name, value", TASK_CASES,
                         ids=[f"{t}-{n}-{BAD_NAMES.index(v)}" for t, n, v in TASK_CASES])
def test_every_task_name_input_refuses_paths(walk_setup, tmp_path, task, name, value):
    base, project = walk_setup
    env = {key: val for key, val in os.environ.items() if not key.startswith(("INPUT_", "AMLOPS_", "SYSTEM_"))}
    env.update({"AMLOPS_TASK_DIR": str(TASKS_DIR / task), "BUILD_SOURCESDIRECTORY": str(project),
                "AGENT_TEMPDIRECTORY": str(tmp_path), "INPUT_TARGET": "local", "INPUT_LOCALWORKSPACE": str(base / "ws"),
                "INPUT_PIPELINEFILE": str(project / "pipeline.yml"), "INPUT_PIPELINENAME": "mini-pipeline",
                "INPUT_MODELNAME": "m", "INPUT_DEPLOYMENTNAME": "d", "INPUT_SCORINGFOLDER": str(project / "code"),
                "INPUT_ENTRYSCRIPT": "score.py", f"INPUT_{name.upper()}": _bad(value, base)})
    before = listing(base)
    done = subprocess.run([sys.executable, "-m", "amlops.devops", task], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("##vso[task.logissue type=error")]
    assert len(errors) == 1, done.stdout
    assert "##vso[task.complete result=Failed]" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert f"input '{name}'" in errors[0]
    assert listing(base) == before


def test_deleting_the_last_deployment_of_a_name_leaves_no_empty_folder(workspace):
    folder = workspace.deployment_dir("d")
    folder.mkdir(parents=True)
    (folder / "server.log").write_text("log")
    workspace.discard(folder)
    assert (workspace.root / "deployments" / "d").exists() is False
    (workspace.root / "deployments" / "d").mkdir()
    workspace.remove_deployment("d")
    assert not (workspace.root / "deployments" / "d").exists()


def test_an_input_or_code_folder_that_is_itself_a_symlink_loop_is_one_line(mini_project, tmp_path):
    os.symlink(mini_project / "loop-b", mini_project / "loop-a")
    os.symlink(mini_project / "loop-a", mini_project / "loop-b")
    edit(mini_project / "pipeline.yml", "path: ./data/numbers.csv", "path: ./loop-a")
    assert "loop-a: a symlink loop" in one_line_error(cli("publish", str(mini_project / "pipeline.yml"),
                                                          workspace=tmp_path / "ws"))
    edit(mini_project / "pipeline.yml", "path: ./loop-a", "path: ./data/numbers.csv")
    edit(mini_project / "components" / "make.yml", "code: ../code", "code: ../loop-a")
    assert "code folder '../loop-a' is a symlink loop" in one_line_error(
        cli("publish", str(mini_project / "pipeline.yml"), workspace=tmp_path / "ws"))
