"""`amlops package`: the .vsix's name, parts and manifests, what each task folder holds, byte-identical rebuilds,
--rev-version, the dev flavour and overrides."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import uuid
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import pytest
import yaml

from support import REPO, SPECS
from vsix_helpers import NS, content_types, package, read_parts, vsix_metadata, vso, xml_items

TASKS = ("AmlPublishPipeline", "AmlRunPipeline", "AmlDeployAci", "AmlSmokeTest", "AmlDeployOnlineEndpoint")


def manifest() -> dict:
    return json.loads((REPO / "vss-extension.json").read_text(encoding="utf-8-sig"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


# -- the manifest and its assets -------------------------------------------------------------------------------
def test_manifest_is_valid_against_the_marketplace_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SPECS / "azure-devops" / "vss-extension.schema.json").read_text(encoding="utf-8-sig"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(manifest())]
    assert not errors, errors


def test_manifest_has_what_the_marketplace_page_needs() -> None:
    data = manifest()
    assert data["manifestVersion"] == 1 and data["categories"] == ["Azure Pipelines"]
    assert data["targets"] == [{"id": "Microsoft.VisualStudio.Services"}]
    assert len(data["description"]) <= 200 and data["tags"] and data["links"] and data["repository"]["uri"]
    tasks = [c for c in data["contributions"] if c["type"] == "ms.vss-distributed-task.task"]
    assert sorted(c["properties"]["name"] for c in tasks) == sorted(f"tasks/{name}" for name in TASKS)
    assert all(c["targets"] == ["ms.vss-distributed-task.tasks"] for c in tasks)
    assert sorted(f["path"] for f in data["files"]) == sorted(f"tasks/{name}" for name in TASKS)
    assert (REPO / data["content"]["license"]["path"]).is_file()


def test_icons_are_real_pngs_of_the_right_size() -> None:
    assert png_size((REPO / manifest()["icons"]["default"]).read_bytes()) == (128, 128)
    for name in TASKS:
        assert png_size((REPO / "tasks" / name / "icon.png").read_bytes()) == (32, 32)


def test_overview_page_explains_the_extension() -> None:
    text = (REPO / manifest()["content"]["details"]["path"]).read_text(encoding="utf-8")
    blocks = text.split("```yaml\n")[1:]
    assert blocks, "a YAML example"
    steps = yaml.safe_load(blocks[0].split("```")[0])["steps"]
    assert {step["task"] for step in steps if "task" in step} >= {f"{name}@0" for name in TASKS}
    assert "service connection" in text.lower() and "Workload identity federation" in text
    for name in TASKS:
        assert f"docs/tasks/{name}.md" in text and (REPO / "docs" / "tasks" / f"{name}.md").is_file()


# -- the package ---------------------------------------------------------------------------------------------------
def test_package_is_named_publisher_id_version(built: Path) -> None:
    data = manifest()
    assert built.name == f"{data['publisher']}.{data['id']}-{data['version']}.vsix"


def test_every_part_is_named_in_content_types(built: Path) -> None:
    parts = read_parts(built)
    defaults, overrides = content_types(parts.pop("[Content_Types].xml"))
    assert all(ext.startswith(".") for ext in defaults)  # tfx's leading-dot form
    for name in parts:
        extension = os.path.splitext(name)[1].lower()
        assert f"/{name}" in overrides or extension in defaults, name
    assert overrides == {"/LICENSE": "text/plain"}
    assert defaults[".vsixmanifest"] == "text/xml" and defaults[".vsomanifest"] == "application/json"
    assert defaults[".whl"] == "application/zip" and defaults[".png"] == "image/png"


def test_manifests_parse_and_describe_the_extension(built: Path) -> None:
    parts = read_parts(built)
    metadata = vsix_metadata(parts)
    identity = metadata.find(f"{NS}Identity")
    assert identity.attrib == {"Language": "en-US", "Id": "amlops", "Publisher": "amlops", "Version": "0.1.0"}
    assert metadata.find(f"{NS}Categories").text == "Azure Pipelines"
    assert metadata.find(f"{NS}Icon").text == "extension/icon.png"
    assert metadata.find(f"{NS}License").text == "LICENSE"
    properties = {p.get("Id").rsplit(".", 1)[-1]: p.get("Value") for p in metadata.iter(f"{NS}Property")}
    assert properties["GitHub"] == manifest()["repository"]["uri"] and "Getstarted" in properties
    root = ElementTree.fromstring(parts["extension.vsixmanifest"])
    assets = [a.attrib for a in root.iter(f"{NS}Asset")]
    assert assets[-1]["Type"] == "Microsoft.VisualStudio.Services.Manifest"
    assert {a["Path"] for a in assets} <= set(parts)
    assert [t.get("Id") for t in root.iter(f"{NS}InstallationTarget")] == ["Microsoft.VisualStudio.Services"]
    assert vso(parts)["contributions"] == manifest()["contributions"]


def test_each_task_folder_holds_everything_its_task_needs(unzipped: Path, wheel: Path) -> None:
    for name in TASKS:
        folder = unzipped / "tasks" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["task.json", "icon.png", "launcher.js", "constraints.txt", wheel.name]), name
        assert_same_task_with_absolute_help(folder / "task.json", REPO / "tasks" / name / "task.json")
        assert (folder / "launcher.js").read_bytes() == (REPO / "extension" / "launcher.js").read_bytes()
        assert (folder / "constraints.txt").read_bytes() == (REPO / "tasks" / "constraints.txt").read_bytes()
        assert (folder / wheel.name).read_bytes() == wheel.read_bytes()
        task = json.loads((folder / "task.json").read_text(encoding="utf-8-sig"))
        assert all((folder / handler["target"]).is_file() for handler in task["execution"].values())


def assert_same_task_with_absolute_help(packaged_path: Path, source_path: Path) -> None:
    """The packaged task.json is the source's, with help links made absolute and a helpUrl added."""
    packaged = json.loads(packaged_path.read_text(encoding="utf-8-sig"))
    source = json.loads(source_path.read_text(encoding="utf-8-sig"))
    base = "https://github.com/amlops/amlops/blob/HEAD/"
    assert packaged.pop("helpUrl") == f"{base}docs/tasks/{source['name']}.md"
    assert f"]({base}docs/tasks/{source['name']}.md)" in packaged["helpMarkDown"]
    assert "](docs/" not in json.dumps(packaged)
    for task in (packaged, source):
        task.pop("helpMarkDown")
        for item in task["inputs"]:
            item.pop("helpMarkDown", None)
    assert packaged == source


def test_the_shipped_wheel_has_a_valid_record(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        record = [line.split(",") for line in archive.read(record_name).decode().splitlines()]
        assert [row[0] for row in record] == names and names[-1] == record_name
        for name, digest, size in record[:-1]:
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data), name
        assert "amlops/devops/__main__.py" in names
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# -- reproducible builds ---------------------------------------------------------------------------------------
def _touch_everything(folder: Path, when: float, mode: int) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)
            os.utime(path, (when, when))


def test_two_builds_are_byte_identical(make_root, wheel: Path, tmp_path: Path) -> None:
    first, second = make_root("first"), make_root("second")
    _touch_everything(second, 1_700_000_000, 0o664)
    a = package("--root", first, "--out", tmp_path / "a", "--wheel", wheel)
    b = package("--root", second, "--out", tmp_path / "b", "--wheel", wheel)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    name = "amlops.amlops-0.1.0.vsix"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with zipfile.ZipFile(tmp_path / "a" / name) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names[:3] == ["[Content_Types].xml", "extension.vsixmanifest", "extension.vsomanifest"]
    assert names[3:] == sorted(names[3:])
    assert {(i.date_time, i.external_attr >> 16) for i in infos} == {((1980, 1, 1, 0, 0, 0), 0o100644)}


def test_two_wheel_builds_are_byte_identical(wheel: Path, wheel_source: Path, tmp_path: Path) -> None:
    """The session's wheel and one built from a copy of its sources with other file times and modes."""
    import shutil

    from amlops.packaging.package import build_reproducible_wheel

    shutil.copytree(wheel_source, tmp_path / "copy")
    _touch_everything(tmp_path / "copy", 1_234_567_890, 0o664)
    again = build_reproducible_wheel(tmp_path / "wheel", tmp_path / "copy")
    assert again.name == wheel.name and again.read_bytes() == wheel.read_bytes()


def test_an_unchanged_source_is_served_from_the_wheel_cache(wheel: Path, wheel_source: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    """The cache is keyed by the source content: a hit is the very same wheel without a build, an edit a miss."""
    import shutil

    from amlops.packaging import stage
    from amlops.packaging.package import build_reproducible_wheel

    if stage.in_process_backend() is None:
        pytest.skip("setuptools>=77 is not installed here (pip install -e '.[dev]'): no in-process build to cache")
    source, cache = tmp_path / "source", tmp_path / "cache"
    shutil.copytree(wheel_source, source)
    first = build_reproducible_wheel(tmp_path / "one", source, cache=cache)
    assert first.read_bytes() == wheel.read_bytes()

    def no_build(*args, **kwargs):
        raise AssertionError("an unchanged source was built again")
    with monkeypatch.context() as patch:
        patch.setattr(stage, "build_wheel", no_build)
        _touch_everything(source, 1_234_567_890, 0o664)  # times and modes are not content
        again = build_reproducible_wheel(tmp_path / "two", source, cache=cache)
    assert again.read_bytes() == first.read_bytes()
    (source / "src" / "amlops" / "py.typed").write_text("# changed\n")
    changed = build_reproducible_wheel(tmp_path / "three", source, cache=cache)
    assert changed.read_bytes() != first.read_bytes()
    assert len([key for key in cache.iterdir() if not key.name.startswith(".")]) == 2


# -- options ---------------------------------------------------------------------------------------------------------
def _versions(root: Path) -> tuple[str, list[int]]:
    data = json.loads((root / "vss-extension.json").read_text())
    patches = [json.loads((root / "tasks" / n / "task.json").read_text(encoding="utf-8-sig"))["version"]["Patch"]
               for n in TASKS]
    return data["version"], patches


def test_rev_version_bumps_extension_and_tasks_together(root: Path, wheel: Path, tmp_path: Path) -> None:
    before = {p: p.read_text() for p in [root / "vss-extension.json", *(root / "tasks").glob("*/task.json")]}
    assert _versions(root) == ("0.1.0", [0, 0, 0, 0, 0])
    result = package("--root", root, "--out", tmp_path / "out", "--wheel", wheel, "--rev-version")
    assert result.exit_code == 0, result.output
    assert _versions(root) == ("0.1.1", [1, 1, 1, 1, 1])
    for path, text in before.items():  # in place: only the version line changed
        changed = [(a, b) for a, b in zip(text.splitlines(), path.read_text().splitlines()) if a != b]
        assert len(changed) == 1 and len(text.splitlines()) == len(path.read_text().splitlines()), path
    parts = read_parts(tmp_path / "out" / "amlops.amlops-0.1.1.vsix")
    assert vsix_metadata(parts).find(f"{NS}Identity").get("Version") == "0.1.1"
    for name in TASKS:
        assert json.loads(parts[f"tasks/{name}/task.json"])["version"]["Patch"] == 1
    assert package("--root", root, "--out", tmp_path / "out", "--wheel", wheel, "--rev-version").exit_code == 0
    assert _versions(root) == ("0.1.2", [2, 2, 2, 2, 2])
    assert (tmp_path / "out" / "amlops.amlops-0.1.2.vsix").is_file()


def test_dev_flavour_installs_next_to_production(root: Path, wheel: Path, tmp_path: Path, built: Path) -> None:
    result = package("--root", root, "--out", tmp_path, "--wheel", wheel, "--dev")
    assert result.exit_code == 0, result.output
    dev, prod = read_parts(tmp_path / "amlops.amlops-dev-0.1.0.vsix"), read_parts(built)
    metadata = vsix_metadata(dev)
    assert metadata.find(f"{NS}Identity").get("Id") == "amlops-dev"
    assert metadata.find(f"{NS}DisplayName").text.endswith("(dev)")
    assert "Public" not in (metadata.find(f"{NS}GalleryFlags").text or "")
    dev_ids, prod_ids = {}, {}
    for name in TASKS:
        dev_task = json.loads(dev[f"tasks/{name}/task.json"])
        prod_task = json.loads(prod[f"tasks/{name}/task.json"])
        assert dev_task["name"] == prod_task["name"] and dev_task["version"] == prod_task["version"]
        assert dev_task["id"] == str(uuid.uuid5(uuid.UUID(prod_task["id"]), f"amlops-dev/{prod_task['id']}"))
        dev_ids[name], prod_ids[name] = dev_task["id"], prod_task["id"]
    assert len(set(dev_ids.values()) | set(prod_ids.values())) == 10
    again = package("--root", root, "--out", tmp_path / "again", "--wheel", wheel, "--dev")
    assert again.exit_code == 0 and (tmp_path / "again" / "amlops.amlops-dev-0.1.0.vsix").read_bytes() == \
        (tmp_path / "amlops.amlops-dev-0.1.0.vsix").read_bytes()


def test_publisher_and_overrides(root: Path, wheel: Path, tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"public": True, "publisher": "from-file", "tags": ["Extra"]}))
    result = package("--root", root, "--out", tmp_path / "out", "--wheel", wheel, "--publisher", "contoso",
                     "--overrides-file", overrides, "--override", '{"name": "Contoso ML", "version": "2.0.0"}')
    assert result.exit_code == 0, result.output
    parts = read_parts(tmp_path / "out" / "contoso.amlops-2.0.0.vsix")
    metadata = vsix_metadata(parts)
    assert metadata.find(f"{NS}Identity").get("Publisher") == "contoso"  # --publisher wins over both
    assert metadata.find(f"{NS}DisplayName").text == "Contoso ML"
    assert metadata.find(f"{NS}GalleryFlags").text == "Public"
    assert metadata.find(f"{NS}Tags").text.split(",")[-1] == "Extra"  # appended, as tfx does
    assert json.loads((root / "vss-extension.json").read_text())["version"] == "0.1.0"  # overrides stay in memory


def test_out_may_name_the_file_and_the_command_reports_what_it_built(root: Path, wheel: Path,
                                                                     tmp_path: Path) -> None:
    result = package("--root", root, "--out", tmp_path / "x" / "ext.vsix", "--wheel", wheel)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "ext.vsix").is_file() and "amlops.amlops 0.1.0" in result.output
    assert all(f"task {name} 0.1.0" in result.output for name in TASKS)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["ext.vsix"]  # no temporary left behind


def test_same_package_through_the_installed_command(root: Path, wheel: Path, tmp_path: Path, built: Path) -> None:
    import subprocess
    import sys

    amlops = Path(sys.executable).with_name("amlops")
    command = [str(amlops)] if amlops.exists() else [sys.executable, "-m", "amlops"]
    done = subprocess.run(command + ["package", "--wheel", str(wheel), "--out", str(tmp_path / "cli")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / built.name).read_bytes() == built.read_bytes()
    assert xml_items(read_parts(built)["extension.vsixmanifest"])
