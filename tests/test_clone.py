"""The test suite in a clone with nothing beside it (a user's laptop, `$(Build.SourcesDirectory)` on an agent):
the tests that need the reference specs skip with one line saying how to get them, and fail on CI (TF_BUILD).

The clone is the committed HEAD (`git archive`), in a temporary folder with no `shared/` next to it; the download
of the pinned specs is pointed at a closed loopback port, so it fails as it would offline and nothing leaves this
machine. A representative subset of the test files runs, with the README's test command otherwise unchanged."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.slow

SUBSET = ["tests/test_azure_pipelines_yaml.py", "tests/devops/test_devops_stage.py", "tests/test_policy.py",
          "tests/test_pipeline_loader.py"]
SUMMARY = re.compile(r"^(\d+) tests (skipped|failed|error) without the reference specs: (.+)$", re.M)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("alone")
    target = root / "amlops"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    assert not (root / "shared").exists()
    return target


def run_tests(clone: Path, cache: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("AMLOPS_SPECS", "CI", "TF_BUILD") and not key.startswith("PYTEST")}
    env.update({"AMLOPS_SPECS_CACHE": str(cache), "AMLOPS_SPECS_BASE_URL": "http://127.0.0.1:9",
                "PYTHONPATH": str(clone / "src"), **extra})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUBSET], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("specs-cache")


@pytest.fixture(scope="module")
def on_a_laptop(clone: Path, cache: Path) -> subprocess.CompletedProcess:
    return run_tests(clone, cache)


def counts(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    return {word: int(number) for number, word in re.findall(r"(\d+) (passed|skipped|failed|errors?)", last)}


def test_without_specs_the_tests_that_need_them_skip_with_one_line(on_a_laptop, clone: Path, cache: Path):
    done = on_a_laptop
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = SUMMARY.findall(done.stdout)
    assert len(summary) == 1, done.stdout[-3000:]
    skipped, outcome, reason = summary[0]
    assert outcome == "skipped" and int(skipped) >= 10
    assert "AMLOPS_SPECS=<folder>" in reason and "Connection refused" in reason
    assert counts(done.stdout)["skipped"] == int(skipped) and counts(done.stdout)["passed"] >= 10
    # pytest's own -ra report: the reason once, for all of them
    assert len([line for line in done.stdout.splitlines() if line.startswith("SKIPPED") and reason in line]) == 1
    assert (clone / "tests" / "specs-manifest.json").is_file() and not list(cache.iterdir())


def test_on_azure_pipelines_without_specs_those_tests_fail(on_a_laptop, clone: Path, cache: Path):
    local = counts(on_a_laptop.stdout)
    done = run_tests(clone, cache, TF_BUILD="True")
    assert done.returncode == 1, done.stdout[-3000:]
    found = counts(done.stdout)
    assert "skipped" not in found
    assert found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0) == local["skipped"]
    assert found["passed"] == local["passed"]
    assert "fails instead of skipping" in done.stdout
