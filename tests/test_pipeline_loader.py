"""Loading and validating pipeline YAML: each broken case gives one clear line with file and line."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from amlops.cli import main
from amlops.errors import PipelineValidationError
from amlops.pipeline.executor import render_command
from amlops.pipeline.loader import load_pipeline, parse_overrides
from support import edit


def test_loads_the_mini_pipeline_in_dependency_order(mini_project: Path):
    pipeline = load_pipeline(mini_project / "pipeline.yml")
    assert pipeline.name == "mini_pipeline"
    assert pipeline.order == ("make", "score")
    assert pipeline.inputs["scale"].value == 2
    assert pipeline.inputs["data"].value == str(mini_project / "data" / "numbers.csv")
    assert pipeline.steps["score"].upstream() == {"make"}
    assert mini_project / "code" in pipeline.files


BROKEN = [
    # (file, old text, new text, expected file:line, expected words)
    ("pipeline.yml", "experiment_name: mini", "experiment_nam: mini", "pipeline.yml:4",
     "unknown field 'experiment_nam'"),
    ("pipeline.yml", "${{parent.inputs.scale}}", "${{parent.inputs.scal}}", "pipeline.yml:23",
     "parent.inputs.scal"),
    ("pipeline.yml", "${{parent.jobs.make.outputs.model}}", "${{parent.jobs.maker.outputs.model}}",
     "pipeline.yml:30", "job 'maker' that does not exist"),
    ("pipeline.yml", "${{parent.jobs.make.outputs.model}}", "${{parent.jobs.make.outputs.modle}}",
     "pipeline.yml:30", "has no output 'modle'"),
    ("pipeline.yml", "metrics: ${{parent.outputs.metrics}}", "metrics: ${{parent.outputs.metric}}",
     "pipeline.yml:32", "pipeline output that does not exist"),
    ("pipeline.yml", "      scale: ${{parent.inputs.scale}}", "      scale: ${{parent.inputs.scale}}\n      speed: 3",
     "pipeline.yml:24", "does not declare"),
    ("pipeline.yml", "  scale: 2", "  scale: fast", "pipeline.yml:23", "must be of type integer"),
    ("pipeline.yml", "      data: ${{parent.inputs.data}}\n", "", "pipeline.yml:19",
     "required input 'data'"),
    ("pipeline.yml", "path: ./data/numbers.csv", "path: ./data/missing.csv", "pipeline.yml:10", "does not exist"),
    ("pipeline.yml", "component: ./components/score.yml", "component: ./components/scor.yml",
     "pipeline.yml:28", "component file './components/scor.yml'"),
    ("pipeline.yml", "jobs:", "jobs: [", "pipeline.yml:", "invalid YAML"),
    ("components/make.yml", "--out ${{outputs.model}}", "--out ${{outputs.mdl}}", "make.yml:20",
     "declares no output 'mdl'"),
    ("components/make.yml", "--scale ${{inputs.scale}}", "--scale ${{inputs.scael}}", "make.yml:20",
     "declares no input 'scael'"),
    ("components/make.yml", "$[[--label ${{inputs.label}}]]", "--label ${{inputs.label}}", "make.yml:20",
     "optional input 'label' is used outside an optional group"),
    ("components/make.yml", "$[[--label ${{inputs.label}}]]", "$[[--label ${{inputs.label}}", "make.yml:20",
     "unbalanced"),
    ("components/make.yml", "$[[--label ${{inputs.label}}]]", "$[[--verbose]]", "make.yml:20",
     "references no input"),
    ("components/make.yml", "code: ../code", "code: ../src", "make.yml:5", "code folder '../src' not found"),
    ("components/make.yml", "python make.py", "python train.py", "make.yml:20", "'train.py' but it is not"),
    ("components/make.yml", "    type: integer\n    default: 1", "    type: integer\n    default: one",
     "make.yml:13", "must be of type integer"),
    ("components/make.yml", "    type: integer", "    type: int", "make.yml:12", "unknown type 'int'"),
    ("components/score.yml", "name: score_model\n", "", "score.yml:1", "missing 'name'"),
]


@pytest.mark.parametrize("file, old, new, location, words", BROKEN, ids=[b[4] for b in BROKEN])
def test_each_broken_yaml_is_one_clear_line(mini_project: Path, file, old, new, location, words):
    edit(mini_project / file, old, new)
    with pytest.raises(PipelineValidationError) as raised:
        load_pipeline(mini_project / "pipeline.yml")
    problems = raised.value.problems
    assert len(problems) == 1, problems
    assert location in problems[0] and words in problems[0], problems[0]
    assert "\n" not in problems[0]


def test_a_cycle_is_reported(mini_project: Path):
    edit(mini_project / "components/make.yml", "  label:\n    type: string\n    optional: true",
         "  label:\n    type: string\n    optional: true\n  previous:\n    type: uri_folder\n    optional: true")
    edit(mini_project / "pipeline.yml", "      scale: ${{parent.inputs.scale}}",
         "      scale: ${{parent.inputs.scale}}\n      previous: ${{parent.jobs.score.outputs.metrics}}")
    with pytest.raises(PipelineValidationError, match="depend on each other in a cycle"):
        load_pipeline(mini_project / "pipeline.yml")


def test_all_problems_are_reported_together(mini_project: Path):
    edit(mini_project / "pipeline.yml", "experiment_name: mini", "experiment_nam: mini")
    edit(mini_project / "pipeline.yml", "  scale: 2", "  scale: fast")
    with pytest.raises(PipelineValidationError) as raised:
        load_pipeline(mini_project / "pipeline.yml")
    assert len(raised.value.problems) == 2


def test_overrides_are_typed_and_checked(mini_project: Path):
    pipeline = load_pipeline(mini_project / "pipeline.yml", parse_overrides(["inputs.scale=5"]))
    assert pipeline.inputs["scale"].value == 5
    with pytest.raises(PipelineValidationError, match="expected a value of type integer"):
        load_pipeline(mini_project / "pipeline.yml", {"scale": "five"})
    with pytest.raises(PipelineValidationError, match="has no input 'scael'"):
        load_pipeline(mini_project / "pipeline.yml", {"scael": "5"})
    with pytest.raises(PipelineValidationError, match="expected inputs.NAME=VALUE"):
        parse_overrides(["scale"])
    datastore = load_pipeline(mini_project / "pipeline.yml",
                              {"data": "azureml://datastores/training_data/paths/numbers.csv"})
    assert datastore.inputs["data"].value == "azureml://datastores/training_data/paths/numbers.csv"


def test_optional_groups_render_only_when_their_input_is_set():
    command = "python make.py --n ${{inputs.n}} $[[--label ${{inputs.label}}]] --out ${{outputs.o}}"
    assert render_command(command, {"n": 3, "label": None}, {"o": "/tmp/o"}) == \
        "python make.py --n 3  --out /tmp/o"
    assert render_command(command, {"n": 3, "label": "a b"}, {"o": "/tmp/o"}) == \
        "python make.py --n 3 --label 'a b' --out /tmp/o"


def test_cli_reports_a_broken_pipeline_without_traceback(mini_project: Path, tmp_path: Path):
    edit(mini_project / "pipeline.yml", "${{parent.inputs.scale}}", "${{parent.inputs.scal}}")
    result = CliRunner().invoke(main, ["publish", str(mini_project / "pipeline.yml"),
                                       "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "pipeline.yml:23" in result.output
