"""The YAML the docs show for AmlDeployOnlineEndpoint is valid against the Azure Pipelines schema extended with our
task.json files (a misspelled input would fail), so the lead can paste the production stage as it is."""
import yaml

from support import REPO
from test_azure_pipelines_yaml import errors


def yaml_blocks(path) -> list:
    text = path.read_text(encoding="utf-8")
    return [yaml.safe_load(block.split("```")[0]) for block in text.split("```yaml\n")[1:]]


def test_the_production_stage_in_the_task_page_is_valid():
    [stage] = yaml_blocks(REPO / "docs" / "tasks" / "AmlDeployOnlineEndpoint.md")
    assert stage[0]["jobs"][0]["environment"] == "production"
    assert errors({"stages": stage}) == []


def test_the_marketplace_example_is_valid():
    [document] = yaml_blocks(REPO / "extension" / "overview.md")
    assert any(step.get("task") == "AmlDeployOnlineEndpoint@0" for step in document["steps"])
    assert errors(document) == []
