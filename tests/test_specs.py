"""tests/specs.py: the order it looks in, the pinned download (served from loopback), and skip versus fail."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

import specs
from prerequisites import on_ci
from specs import MANIFEST, SpecsUnavailable, download, locate

CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


class Upstream:
    """A loopback stand-in for raw.githubusercontent.com: /<repo>/<commit>/<path> -> bytes, and what was asked."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                upstream.requests.append(unquote(self.path))
                body = upstream.files.get(unquote(self.path))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> Upstream:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def upstream_files(source: Path, listing: dict) -> dict[str, bytes]:
    """What GitHub serves for every downloadable file of `listing`: CRLF where the manifest says upstream has it."""
    served = {}
    for item in listing["files"]:
        if "in_repo" in item:
            continue
        data = (source / item["path"]).read_bytes()
        if item.get("upstream_line_endings") == "CRLF":
            data = data.replace(b"\n", b"\r\n")
        served[f"/{item['repo']}/{item['commit']}/{item['upstream']}"] = data
    return served


@pytest.fixture
def no_specs(tmp_path: Path) -> dict[str, str]:
    """An environment and a repository location where nothing is found and the download is refused."""
    (tmp_path / "clone").mkdir()
    return {"AMLOPS_SPECS_CACHE": str(tmp_path / "cache"), "AMLOPS_SPECS_BASE_URL": CLOSED_PORT_URL}


def test_the_manifest_lists_every_file_of_the_specs_with_its_hash():
    folder = specs.folder()
    listed = {item["path"]: item for item in manifest()["files"]}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(listed) == present, "the specs changed: run `python tests/specs_manifest.py <specs folder>`"
    for name, item in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == item["sha256"], name
        assert ("in_repo" in item) != ("repo" in item and "commit" in item and "upstream" in item), name


def test_every_file_compared_with_upstream_matched_and_the_rest_is_said():
    items = manifest()["files"]
    assert not [i["path"] for i in items if i.get("upstream_verified") is False]
    verified = [i for i in items if i.get("upstream_verified")]
    assert len(verified) >= 27 and all(len(i["commit"]) == 40 for i in verified)
    assert {i["repo"] for i in items if "repo" in i and "upstream_verified" not in i} == \
        {"Azure/azure-rest-api-specs", "Azure/azure-sdk-assets"}  # too large to clone here: not compared
    assert all("note" in i for i in items if "in_repo" in i or "upstream_line_endings" in i)


def test_the_named_folder_comes_first_then_the_sibling(tmp_path: Path):
    named, sibling = tmp_path / "named", tmp_path / "shared" / "specs"
    named.mkdir()
    sibling.mkdir(parents=True)
    clone = tmp_path / "clone"
    assert locate({"AMLOPS_SPECS": str(named)}, repo=clone) == named
    assert locate({}, repo=clone) == sibling


def test_a_named_folder_that_does_not_exist_is_an_error_not_a_fallback(tmp_path: Path):
    (tmp_path / "shared" / "specs").mkdir(parents=True)
    with pytest.raises(SpecsUnavailable, match=r"AMLOPS_SPECS=.*nowhere is not a folder"):
        locate({"AMLOPS_SPECS": str(tmp_path / "nowhere")}, repo=tmp_path / "clone")


def test_without_specs_the_reason_is_one_line_saying_how_to_get_them(tmp_path: Path, no_specs):
    with pytest.raises(SpecsUnavailable) as error:
        locate(no_specs, repo=tmp_path / "clone")
    message = str(error.value)
    assert "\n" not in message
    assert "AMLOPS_SPECS=<folder>" in message and CLOSED_PORT_URL in message and "Connection refused" in message
    assert not list((tmp_path / "cache").glob("*/*")), "nothing half-downloaded is left as a cache"


@pytest.mark.slow
def test_the_pinned_download_fills_the_cache_and_is_used_next_time(tmp_path: Path, no_specs):
    listing = manifest()
    with Upstream(upstream_files(specs.folder(), listing)) as upstream:
        found = locate({**no_specs, "AMLOPS_SPECS_BASE_URL": upstream.url}, repo=tmp_path / "clone")
        assert len(upstream.requests) == sum("in_repo" not in item for item in listing["files"])
    assert found.parent == tmp_path / "cache"
    for item in listing["files"]:
        assert hashlib.sha256((found / item["path"]).read_bytes()).hexdigest() == item["sha256"]
    # the CRLF files upstream were normalized to the LF text the hashes are of
    assert any(item.get("upstream_line_endings") == "CRLF" for item in listing["files"])
    # a second session reads the cache: no network at all
    assert locate(no_specs, repo=tmp_path / "clone") == found


def small_listing() -> dict:
    names = ["azure-devops/task.schema.json", "azure-devops/rest-7.1/recorded-resourceareas.json",
             "azure/recordings/pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_component_job.json"]
    return {"base_url": "unused", "files": [i for i in manifest()["files"] if i["path"] in names]}


def test_a_tampered_file_is_refused_and_nothing_is_cached(tmp_path: Path):
    listing = small_listing()
    served = upstream_files(specs.folder(), listing)
    tampered = next(url for url in served if url.endswith("tasks.schema.json"))
    served[tampered] = served[tampered].replace(b"task", b"tusk", 1)
    with Upstream(served) as upstream, pytest.raises(ValueError, match=r"task.schema.json: sha256 .* refused"):
        download(listing, upstream.url, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() and not list(tmp_path.iterdir())


def test_a_file_larger_than_pinned_is_refused(tmp_path: Path):
    listing = small_listing()
    served = upstream_files(specs.folder(), listing)
    grown = next(url for url in served if url.endswith("tasks.schema.json"))
    served[grown] += b" " * 10
    with Upstream(served) as upstream, pytest.raises(ValueError, match=r"more than the manifest's .* refused"):
        download(listing, upstream.url, tmp_path / "cache")


@pytest.fixture
def no_specs_found(monkeypatch):
    """This session's locator, as it would be where nothing is found (the real answer is restored after)."""
    def unavailable(*args, **kwargs):
        raise SpecsUnavailable("no reference specs: how to get them")

    monkeypatch.setattr(specs, "locate", unavailable)
    specs._located.cache_clear()
    yield
    specs._located.cache_clear()


def test_missing_specs_skip_locally_and_fail_on_ci(monkeypatch, no_specs_found):
    for name in ("CI", "TF_BUILD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.skip.Exception, match="how to get them"):
        (specs.SPECS / "x").exists()
    for name, value in (("TF_BUILD", "True"), ("CI", "true")):
        with monkeypatch.context() as ci:
            ci.setenv(name, value)
            assert on_ci()
            with pytest.raises(pytest.fail.Exception, match=r"how to get them .*fails instead of skipping"):
                specs.SPECS.read_text()
    monkeypatch.setenv("CI", "false")
    assert not on_ci()
