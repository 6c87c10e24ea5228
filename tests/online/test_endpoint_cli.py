"""`amlops deploy --target online-endpoint` and `amlops endpoints ...` on the local backend, as a user runs them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from online_support import request_file, scoring_folder, workspace_with_model


def amlops(*args: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amlops", *args, "--workspace", str(workspace)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = workspace_with_model(tmp_path).root
    yield folder
    for name in ("cli-ep",):
        amlops("endpoints", "delete", name, workspace=folder)


@pytest.mark.slow
def test_deploy_then_traffic_rollback_and_delete(workspace: Path, tmp_path: Path):
    if not shutil.which("caddy"):
        pytest.skip("caddy (apt-get install caddy)")
    request = str(request_file(tmp_path))
    for name, value in (("blue", 0.1), ("green", 0.2)):
        done = amlops("deploy", "driver:1", "--target", "online-endpoint", "--endpoint", "cli-ep", "--name", name,
                      "--scoring-folder", str(scoring_folder(tmp_path, name, value)), "--request-file", request,
                      workspace=workspace)
        assert done.returncode == 0, done.stderr
        assert f"endpoint cli-ep: {name} 100%; scoring URI http://127.0.0.1:" in done.stdout
    shown = amlops("endpoints", "show", "cli-ep", workspace=workspace)
    assert shown.returncode == 0 and "blue        driver:1  Healthy  0" in shown.stdout, shown.stdout
    assert "traffic      green 100%" in shown.stdout

    traffic = amlops("endpoints", "traffic", "cli-ep", "blue=90", "green=10", workspace=workspace)
    assert traffic.stdout.strip() == "endpoint cli-ep: blue 90%, green 10%", traffic.stderr
    bad = amlops("endpoints", "traffic", "cli-ep", "blue=90", workspace=workspace)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "add up to 100" in bad.stderr
    rolled = amlops("endpoints", "rollback", "cli-ep", "--to", "green", workspace=workspace)
    assert rolled.stdout.strip() == "endpoint cli-ep: green 100%"
    rolled = amlops("endpoints", "rollback", "cli-ep", workspace=workspace)
    assert rolled.stdout.strip() == "endpoint cli-ep: blue 100%"

    listed = amlops("endpoints", "list", workspace=workspace)
    assert "cli-ep  Succeeded  blue 100%" in listed.stdout
    assert amlops("endpoints", "delete", "cli-ep", "--deployment", "green", workspace=workspace).returncode == 0
    assert amlops("endpoints", "delete", "cli-ep", workspace=workspace).stdout.strip() == "deleted endpoint cli-ep"
    assert amlops("endpoints", "list", workspace=workspace).stdout.strip() == "no online endpoints"


def test_bad_input_is_one_line(workspace: Path, tmp_path: Path):
    steps = amlops("deploy", "driver", "--target", "online-endpoint", "--endpoint", "cli-ep", "--name", "blue",
                   "--traffic-steps", "10,x", workspace=workspace)
    assert steps.returncode == 1 and steps.stderr == ("error: --traffic-steps must be percentages separated by "
                                                      "commas such as 10,50,100, got '10,x'\n")
    missing = amlops("deploy", "driver", "--target", "online-endpoint", "--name", "blue", workspace=workspace)
    assert missing.returncode == 2 and "--target online-endpoint needs --endpoint NAME" in missing.stderr
    name = amlops("deploy", "driver", "--target", "online-endpoint", "--endpoint", "x", "--name", "blue",
                  "--scoring-folder", str(scoring_folder(tmp_path, "s", 0.1)), workspace=workspace)
    assert name.returncode == 1 and name.stderr.startswith("error: endpoint name 'x' is not valid")
    assert "Traceback" not in name.stderr + steps.stderr + missing.stderr
    unknown = amlops("endpoints", "show", "nothing-here", workspace=workspace)
    assert unknown.returncode == 1 and "online endpoint nothing-here not found" in unknown.stderr
