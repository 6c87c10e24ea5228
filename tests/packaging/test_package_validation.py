"""Each invalid manifest or task gives its own clear message and nothing is written: no .vsix, and with
--rev-version no version edit either."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest

from vsix_helpers import package


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    change(data)
    path.write_text(json.dumps(data, indent=2))


def manifest_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda root: edit_json(root / "vss-extension.json", change)


def task_edit(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda root: edit_json(root / "tasks" / name / "task.json", change)


def add_file(relative: str, data: bytes = b"x") -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        manifest_edit(lambda m: m["files"].append({"path": relative}))(root)
    return change


def both(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        for one in changes:
            one(root)
    return change


def _duplicate_contribution(m: dict) -> None:
    m["contributions"][1]["id"] = m["contributions"][0]["id"]


def _same_guid(root: Path) -> None:
    task_id = json.loads((root / "tasks" / "AmlPublishPipeline" / "task.json").read_text(encoding="utf-8-sig"))["id"]
    task_edit("AmlSmokeTest", lambda t: t.update(id=task_id.upper()))(root)


CASES = {
    # what tfx-cli rejects
    "no id": (manifest_edit(lambda m: m.pop("id")), "id is missing"),
    "id with a space": (manifest_edit(lambda m: m.update(id="aml ops")), "id 'aml ops' must be letters"),
    "version not numbers": (manifest_edit(lambda m: m.update(version="1.0-beta")), "version '1.0-beta' must be"),
    "no name": (manifest_edit(lambda m: m.pop("name")), "name is missing"),
    "no publisher": (manifest_edit(lambda m: m.pop("publisher")), "publisher is missing"),
    "no categories": (manifest_edit(lambda m: m.update(categories=[])), "categories is missing"),
    "unknown category": (manifest_edit(lambda m: m.update(categories=["Azure Magic"])), "category 'Azure Magic'"),
    "long description": (manifest_edit(lambda m: m.update(description="x" * 201)), "at most 200 characters"),
    "unknown target": (manifest_edit(lambda m: m["targets"].append({"id": "Microsoft.Nope"})),
                       "target 'Microsoft.Nope' is not a recognized target"),
    "no contributions": (manifest_edit(lambda m: m.update(contributions=[])), "has no contributions"),
    "duplicate contribution id": (manifest_edit(_duplicate_contribution),
                                  "contribution id 'aml-publish-pipeline' is used twice"),
    "part name with a space": (add_file("extension/read me.md"), "part name 'extension/read me.md' is invalid"),
    "part name ending in a dot": (add_file("extension/notes."), "part name 'extension/notes.' is invalid"),
    "names differing only in case": (both(add_file("extension/Notes.md"), add_file("extension/NOTES.md")),
                                     "differ only in case"),
    "file that does not exist": (manifest_edit(lambda m: m["files"].append({"path": "nowhere"})),
                                 "files[5].path 'nowhere' does not exist"),
    "path outside the root": (manifest_edit(lambda m: m["files"].append({"path": "../secrets"})),
                              "'../secrets' must be a relative path inside the extension root"),
    # what tfx only warns about and the server rejects at upload
    "task.json against the schema": (task_edit("AmlRunPipeline", lambda t: t["inputs"][0].update(type="bogus")),
                                     "tasks/AmlRunPipeline/task.json: inputs[0].type: \"bogus\" matches none"),
    "category a list": (task_edit("AmlDeployAci", lambda t: t.update(category=["Azure Pipelines"])),
                        "tasks/AmlDeployAci/task.json: category must be a string"),
    "task id not a GUID": (task_edit("AmlSmokeTest", lambda t: t.update(id="smoke")),
                           "tasks/AmlSmokeTest/task.json: id 'smoke' must be a GUID"),
    "task ids not unique": (_same_guid, "is also the id of tasks/AmlPublishPipeline/task.json"),
    "handler target missing": (task_edit("AmlSmokeTest", lambda t: t["execution"]["Node24"].update(target="x.js")),
                               "execution.Node24.target 'x.js' is not in the staged task folder"),
    "task folder not in files": (manifest_edit(lambda m: m["files"].pop(3)),
                                 "task folder 'tasks/AmlSmokeTest' is not under any `files` path"),
    "friendly name too long": (task_edit("AmlRunPipeline", lambda t: t.update(friendlyName="x" * 41)),
                               "friendlyName must be 1 to 40 characters"),
    "task.json missing": (lambda root: (root / "tasks" / "AmlDeployAci" / "task.json").unlink(),
                          "tasks/AmlDeployAci/task.json does not exist"),
    "manifest not JSON": (lambda root: (root / "vss-extension.json").write_text('{"id": "amlops",\n}'),
                          "vss-extension.json is not valid JSON (line 2"),
}


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _assert_refused(root: Path, out: Path, wheel: Path, expected: str, *extra: str) -> str:
    before = _snapshot(root)
    result = package("--root", root, "--out", out, "--wheel", wheel, "--rev-version", *extra)
    assert result.exit_code == 1, result.output
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing may be written"
    assert _snapshot(root) == before, "--rev-version must not edit anything when the package is refused"
    return result.stderr


@pytest.mark.parametrize("case", CASES)
def test_invalid_input_is_refused_with_a_clear_message(case: str, root: Path, wheel: Path, tmp_path: Path) -> None:
    change, expected = CASES[case]
    change(root)
    _assert_refused(root, tmp_path / "out", wheel, expected)


def test_every_problem_is_listed_once(root: Path, wheel: Path, tmp_path: Path) -> None:
    manifest_edit(lambda m: m.update(id="a b", version="x", description="y" * 300))(root)
    task_edit("AmlSmokeTest", lambda t: t.update(category=7))(root)
    task_edit("AmlRunPipeline", lambda t: t["execution"]["Node20_1"].update(target="gone.js"))(root)
    add_file("extension/read me.md")(root)
    text = _assert_refused(root, tmp_path / "out", wheel, "6 problems; nothing was written")
    for fragment in ("id 'a b'", "version 'x'", "at most 200 characters", "category must be a string",
                     "Node20_1.target 'gone.js'", "part name 'extension/read me.md'"):
        assert text.count(fragment) == 1, text
    assert "category: 7 is not of type string" not in text  # the schema's duplicate of the same problem


def test_size_limits(root: Path, wheel: Path, tmp_path: Path, monkeypatch) -> None:
    from amlops.packaging import validate

    assert validate.WARN_BYTES == 25 * 1024 * 1024 and validate.MAX_BYTES == 50_000_000
    monkeypatch.setattr(validate, "WARN_BYTES", 100_000)
    warned = package("--root", root, "--out", tmp_path / "warned", "--wheel", wheel)
    assert warned.exit_code == 0 and re.search(r"warning: the package is \d+\.\d MiB", warned.stderr), warned.output
    assert "over Azure DevOps Server's default 25 MiB limit" in warned.stderr
    monkeypatch.setattr(validate, "MAX_BYTES", 200_000)
    _assert_refused(root, tmp_path / "refused", wheel, "over the Marketplace's 50 MB limit")


def test_a_bad_override_is_refused(root: Path, wheel: Path, tmp_path: Path) -> None:
    _assert_refused(root, tmp_path / "out", wheel, "--override is not valid JSON", "--override", "{public: true}")
    _assert_refused(root, tmp_path / "out", wheel, "publisher 'no spaces allowed' must be",
                    "--publisher", "no spaces allowed")


def test_schema_checker_agrees_with_jsonschema(root: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from amlops.packaging import schema_check

    validator = jsonschema.Draft4Validator(schema_check.task_schema())
    task = json.loads((root / "tasks" / "AmlRunPipeline" / "task.json").read_text(encoding="utf-8-sig"))
    mutations = [lambda t: None, lambda t: t.update(category=["x"]), lambda t: t.update(unknown=1),
                 lambda t: t["inputs"][0].update(type="bogus"), lambda t: t["version"].update(Patch="1"),
                 lambda t: t["inputs"][1].pop("name"), lambda t: t["execution"].update(Node24=[]),
                 lambda t: t.update(runsOn=["Agent", "Moon"]), lambda t: t["groups"][0].update(extra=True),
                 lambda t: t.update(id="not-a-guid"), lambda t: t["inputs"][0].update(type="connectedService:X")]
    for mutate in mutations:
        mutated = json.loads(json.dumps(task))
        mutate(mutated)
        ours = schema_check.problems(mutated)
        theirs = list(validator.iter_errors(mutated))
        assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])
