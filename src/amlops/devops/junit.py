"""Smoke-test checks as a JUnit XML test run, published with `##vso[results.publish type=JUnit]` so they show
in the pipeline run's Tests tab (and its history and analytics) next to the summary."""
from __future__ import annotations

import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path


def write_junit(directory: Path, suite: str, checks: Iterable[tuple[str, bool, str]], seconds: float = 0.0) -> Path:
    """`<directory>/amlops-tests-<random>/<suite>.xml` with one test case per (name, passed, detail) check."""
    checks = list(checks)
    failures = sum(1 for _, passed, _ in checks if not passed)
    root = ElementTree.Element("testsuites", tests=str(len(checks)), failures=str(failures))
    element = ElementTree.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                                     failures=str(failures), errors="0", time=f"{seconds:.3f}")
    for name, passed, detail in checks:
        case = ElementTree.SubElement(element, "testcase", classname=suite, name=name, time="0")
        if passed:
            ElementTree.SubElement(case, "system-out").text = detail
        else:
            ElementTree.SubElement(case, "failure", message=detail).text = detail
    folder = Path(directory) / f"amlops-tests-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smoke-test.xml"
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
