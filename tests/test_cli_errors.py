"""A user mistake is one line on stderr and exit code 1, never a traceback; --debug shows it."""
import pytest
from click.testing import CliRunner

from amlops.cli import main

MISTAKES = [
    (["submit", "nope"], "pipeline nope is not published"),
    (["runs", "show", "run-x"], "run run-x not found"),
    (["models", "show", "nope"], "model nope is not registered"),
    (["deploy", "nope:1", "--name", "x"], "model nope version 1 is not registered"),
    (["deployments", "show", "x"], "deployment x not found"),
    (["publish", "missing.yml"], "missing.yml: pipeline file not found"),
    (["datastore", "upload", "--file", "missing.csv"], "--file missing.csv: no such file"),
    (["smoke-test", "http://127.0.0.1:9/score", "--request-file", "missing.json"], "request file missing.json"),
    (["smoke-test", "http://127.0.0.1:9/score", "--expected", "[oops"], "--expected must be a JSON list of numbers"),
]


@pytest.mark.parametrize("args, words", MISTAKES, ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_mistakes_are_one_clear_line(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMLOPS_WORKSPACE", str(tmp_path / "ws"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and words in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLOPS_WORKSPACE", str(tmp_path / "ws"))
    result = CliRunner().invoke(main, ["--debug", "submit", "nope"])
    assert result.exit_code == 1 and "Traceback" in result.output


def test_azure_backend_options_are_checked_before_any_call(monkeypatch):
    pytest.importorskip("azure.identity")
    monkeypatch.delenv("AZURE_CLIENT_SECRET", raising=False)
    base = ["runs", "list", "--backend", "azure", "--subscription-id", "s", "--resource-group", "r",
            "--workspace-name", "w"]
    result = CliRunner().invoke(main, base + ["--tenant-id", "t", "--client-id", "c"])
    assert result.exit_code == 1 and "needs all of tenant id, client id and client secret" in result.output
    result = CliRunner().invoke(main, base + ["--cloud", "Mars"])
    assert result.exit_code == 1 and "unknown Azure cloud 'Mars'" in result.output
    result = CliRunner().invoke(main, ["runs", "list", "--backend", "azure"])
    assert result.exit_code == 1 and "needs --subscription-id, --resource-group, --workspace-name" in result.output


def test_every_command_is_in_the_lazy_command_map():
    """The CLI imports a command's module only when it runs; a command missing from the map would vanish."""
    import importlib
    import pkgutil

    import amlops.cli as cli

    modules = [m.name for m in pkgutil.iter_modules(cli.__path__) if m.name.endswith("_commands")]
    for module_name in modules:
        for command in importlib.import_module(f"amlops.cli.{module_name}").COMMANDS:
            assert cli.COMMAND_MODULES.get(command.name) == module_name, f"{command.name} missing from COMMAND_MODULES"
            assert cli.main.get_command(None, command.name) is command
    assert sorted(cli.main.list_commands(None)) == sorted(cli.COMMAND_MODULES)


def test_submit_does_not_import_the_deploy_commands():
    import subprocess
    import sys

    code = ("import sys; from amlops.cli import main; main.get_command(None, 'submit'); "
            "print(sorted(m for m in sys.modules if m.startswith('amlops.cli.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "workspace_commands" in loaded and "deploy_commands" not in loaded and "endpoint_commands" not in loaded
