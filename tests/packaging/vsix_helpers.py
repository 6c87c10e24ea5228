"""Helpers for the packaging tests: run `amlops package`, read a .vsix, compare XML ignoring order, find tfx-cli."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

from click.testing import CliRunner, Result

from prerequisites import missing

HERE = Path(__file__).resolve().parent
TFX = HERE / "node_modules" / ".bin" / "tfx"
NS = "{http://schemas.microsoft.com/developer/vsx-schema/2011}"


def package(*args: str | Path) -> Result:
    """`amlops package ARGS` in this process (AmlopsError -> exit code 1 and `error: ...` on stderr)."""
    from amlops.cli import main

    return CliRunner().invoke(main, ["package", *map(str, args)])


def read_parts(vsix: Path) -> dict[str, bytes]:
    """File entries of a zip by name (directory entries, which tfx writes and we do not, left out)."""
    with zipfile.ZipFile(vsix) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def xml_items(text: bytes | str) -> list[tuple]:
    """Every element as (path from the root, attributes, text), sorted: equal lists mean the same elements and
    attributes in any order."""
    items = []

    def walk(element: ElementTree.Element, path: str) -> None:
        here = f"{path}/{element.tag}"
        items.append((here, tuple(sorted(element.attrib.items())), (element.text or "").strip()))
        for child in element:
            walk(child, here)

    walk(ElementTree.fromstring(text), "")
    return sorted(items)


def content_types(text: bytes | str) -> tuple[dict[str, str], dict[str, str]]:
    """([Content_Types].xml Defaults by extension, Overrides by part name)."""
    ns = "{http://schemas.openxmlformats.org/package/2006/content-types}"
    root = ElementTree.fromstring(text)
    defaults = {e.get("Extension"): e.get("ContentType") for e in root.iter(f"{ns}Default")}
    overrides = {e.get("PartName"): e.get("ContentType") for e in root.iter(f"{ns}Override")}
    return defaults, overrides


def vsix_metadata(parts: dict[str, bytes]) -> ElementTree.Element:
    return ElementTree.fromstring(parts["extension.vsixmanifest"]).find(f"{NS}Metadata")


def vso(parts: dict[str, bytes]) -> dict:
    return json.loads(parts["extension.vsomanifest"])


def tfx_or_skip() -> Path:
    """tfx-cli (and `file`, which tfx asks for content types) or: skip locally, fail in CI."""
    absent = [what for what, found in (("tfx-cli (npm ci --prefix tests/packaging)", TFX.exists()),
                                       ("node", shutil.which("node")), ("file", shutil.which("file"))) if not found]
    if not absent:
        return TFX
    missing(f"missing {', '.join(absent)}: the tfx-cli comparison cannot run (.ci/run installs them)")


def tfx_create(root: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`tfx extension create` on a staged root; the .vsix lands in out_dir."""
    return subprocess.run([str(tfx_or_skip()), "extension", "create", "--root", str(root), "--manifests",
                           "vss-extension.json", "--output-path", f"{out_dir}{os.sep}", "--no-prompt", "--no-color",
                           *args], capture_output=True, text=True, timeout=180)
