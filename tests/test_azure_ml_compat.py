"""Every pipeline YAML our loader accepts in the tests also loads with azure-ai-ml's own loader, and
importing amlops does not import azure-ai-ml (it costs ~3 s)."""
import subprocess
import sys
from pathlib import Path

import pytest

from amlops.pipeline.loader import load_pipeline
from support import REPO, TESTS

ACCEPTED = [TESTS / "mini_project" / "pipeline.yml", REPO / "training" / "pipeline.yml",
            TESTS / "inline_project" / "pipeline.yml", TESTS / "inline_project" / "mixed.yml"]


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
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
        if step.component.inline:  # an inline job's types are inferred from its bindings, as azure-ai-ml does
            assert {k: v.type for k, v in component.outputs.items()} == \
                {k: v.type for k, v in step.component.outputs.items()}
            for key, spec in step.component.inputs.items():
                theirs_type = getattr(component.inputs[key], "type", None)
                if theirs_type is not None:
                    assert theirs_type == spec.type, (name, key)


def test_importing_amlops_and_its_cli_does_not_import_azure():
    code = ("import sys, amlops, amlops.cli, amlops.api, amlops.flow; "
            "import amlops.pipeline.executor, amlops.workspace.local.workspace, amlops.workspace.local.tracking; "
            "print(sorted(m for m in sys.modules if m.startswith(('azure', 'lightgbm', 'pandas', 'mlflow'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
