"""Every pipeline YAML our loader accepts in the tests also loads with azure-ai-ml's own loader, and
importing amlops does not import azure-ai-ml (it costs ~3 s)."""
import subprocess
import sys
from pathlib import Path

import pytest

from amlops.pipeline.loader import load_pipeline
from support import REPO, TESTS

ACCEPTED = [TESTS / "mini_project" / "pipeline.yml", REPO / "training" / "pipeline.yml"]


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.parent.name)
def test_accepted_pipelines_load_with_azure_ai_ml(path: Path):
    load_ml = pytest.importorskip("azure.ai.ml").load_job
    ours = load_pipeline(path)
    theirs = load_ml(path)
    assert theirs.type == "pipeline"
    assert set(theirs.jobs) == set(ours.steps)
    assert set(theirs.inputs) == set(ours.inputs) and set(theirs.outputs) == set(ours.outputs)
    for name, step in ours.steps.items():
        component = theirs.jobs[name].component
        assert set(component.inputs) == set(step.component.inputs)
        assert set(component.outputs) == set(step.component.outputs)


def test_importing_amlops_and_its_cli_does_not_import_azure():
    code = ("import sys, amlops, amlops.cli, amlops.api, amlops.flow; "
            "print(sorted(m for m in sys.modules if m.startswith(('azure', 'lightgbm', 'pandas'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
