"""Writes tests/specs-manifest.json from a folder of reference specs: every file with its sha256, size and
where it came from (repository, commit, path), as ../shared/specs/README.md and its recordings README record.

    python tests/specs_manifest.py ../shared/specs [MIRRORS]

Run it again whenever the specs folder changes; tests/specs.py downloads and checks against its output.
MIRRORS, a folder of git clones named `<owner>+<name>/repo`, checks each file against the upstream bytes: the
short commit becomes the full one, and a file whose commit was not recorded gets the newest commit whose version
of the file has exactly these bytes. Each entry then says whether its bytes were compared with upstream.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from support import REPO, TESTS

MANIFEST = TESTS / "specs-manifest.json"
# Files derived from upstream data rather than copied from it (no upstream file to download): kept in the repo.
DERIVED = TESTS / "specs-derived"
RAW_BASE_URL = "https://raw.githubusercontent.com"
RECORDINGS = "python/sdk/ml/azure-ai-ml/tests/recordings"
# Commits of the recordings, per file, from azure/recordings/README.md.
RECORDING_COMMITS = {
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_job_validation_remote[non_existent_compute.yml]"
    ".json": "2909d3d143db4b5d34920f04cae4b759daaefa63",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_job_create.json":
        "03a1e3cb40cafd6f2b1da9649fc04fc42ba45b79",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_component_job.json":
        "101248d8db5a19fc144dfd18c989d629cbfc21b5",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_job_default_datastore_compute.json":
        "101248d8db5a19fc144dfd18c989d629cbfc21b5",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobLongRunningtest_pipeline_job_child_run_download.json":
        "6873a4bb4509b5c29e33fee00254e4fae61e859b",
    "command_job/test_command_job.pyTestCommandJobtest_command_job_invalid_datastore.json":
        "0f205ad0ccc3172a5f53d86f21c9f2a79da41099",
    "command_job/test_command_job.pyTestCommandJobtest_command_job_register_output.json":
        "0f205ad0ccc3172a5f53d86f21c9f2a79da41099",
    "command_job/test_command_job.pyTestCommandJobtest_command_job_with_inputs_with_datastore_param.json":
        "0f205ad0ccc3172a5f53d86f21c9f2a79da41099",
    "online_services/test_online_endpoint.pyTestOnlineEndpointtest_online_endpoint_mir_e2e.json":
        "f79c68956c06a6acf19e1bacbd9c3019b4f4430a",
    "model/test_model.pyTestModeltest_crud_file.json": "0f205ad0ccc3172a5f53d86f21c9f2a79da41099",
    "datastore/test_datastore.pyTestDatastoretest_blob_store_credential_less.json":
        "0f205ad0ccc3172a5f53d86f21c9f2a79da41099",
}
# Recorded on Windows in 2023: stored upstream with CRLF line endings, transcribed here with LF.
CRLF_UPSTREAM = {
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_job_validation_remote[non_existent_compute.yml]"
    ".json",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_component_job.json",
    "pipeline_job/test_pipeline_job.pyTestPipelineJobtest_pipeline_job_default_datastore_compute.json",
}
UNRECORDED_COMMIT = ("the commit was not recorded when the file was copied; this is the file's version in the "
                     "public index it was read from")
# (prefix in the specs folder, repository, commit, path upstream for the rest of the name, note); first match wins.
SOURCES = [
    ("azure-devops/task.schema.json", "microsoft/azure-pipelines-task-lib", "a5e7ee0", "tasks.schema.json", ""),
    ("azure-devops/vss-extension.schema.json", "SchemaStore/schemastore", "d4d06b3df077ddbc9047fc896fece86a94a38de0",
     "src/schemas/json/vss-extension.json", UNRECORDED_COMMIT),
    ("azure-devops/pipelines-yaml.schema.json", "microsoft/azure-pipelines-vscode",
     "2bc6a2af57c9e839a6885f818c142f77355704e8", "service-schema.json", UNRECORDED_COMMIT),
    ("azure-devops/rest-7.1/policy-examples/", "MicrosoftDocs/vsts-rest-api-specs", "adb2878",
     "specification/policy/7.1/httpExamples/", ""),
    ("azure-devops/rest-7.1/policy.json", "MicrosoftDocs/vsts-rest-api-specs", "adb2878",
     "specification/policy/7.1/policy.json", ""),
    ("azure-devops/rest-7.1/git.json", "MicrosoftDocs/vsts-rest-api-specs", "adb2878",
     "specification/git/7.1/git.json", ""),
    ("azure-devops/rest-7.1/build.json", "MicrosoftDocs/vsts-rest-api-specs", "adb2878",
     "specification/build/7.1/build.json", ""),
    ("azure/rest-api-specs/", "Azure/azure-rest-api-specs", "7dfd170", "", ""),
    ("azure/arm-template-schemas/", "Azure/azure-resource-manager-schemas", "a145443", "schemas/", ""),
]
NOT_LISTED = ("README.md",)  # notes written when copying, not data the tests read


def entry(specs: Path, path: Path) -> dict:
    name = path.relative_to(specs).as_posix()
    data = path.read_bytes()
    item = {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    derived = DERIVED / name
    if derived.is_file():
        assert derived.read_bytes() == data, f"{derived} differs from {path}"
        return item | {"in_repo": derived.relative_to(REPO).as_posix(),
                       "note": "extracted from Azure/azure-devops-cli-extension test recordings @ e547b4a: "
                               "no upstream file holds these bytes"}
    if name.startswith("azure/recordings/"):
        rest = name.removeprefix("azure/recordings/")
        folder, file = rest.split("/", 1)
        item |= {"repo": "Azure/azure-sdk-assets", "commit": RECORDING_COMMITS[rest],
                 "upstream": f"{RECORDINGS}/{folder}/e2etests/{file}"}
        if rest in CRLF_UPSTREAM:
            item |= {"upstream_line_endings": "CRLF",
                     "note": "transcribed with LF line endings: the sha256 is of the LF text; the download "
                             "converts CRLF to LF before checking it"}
        return item
    for prefix, repo, commit, upstream, note in SOURCES:
        if name == prefix or (prefix.endswith("/") and name.startswith(prefix)):
            item |= {"repo": repo, "commit": commit, "upstream": upstream + name.removeprefix(prefix)}
            return item | ({"note": note} if note else {})
    raise SystemExit(f"{name}: no source known; add it to SOURCES in {Path(__file__).name}")


def upstream_bytes(mirror: Path, commit: str, path: str) -> bytes | None:
    done = subprocess.run(["git", "-C", str(mirror), "show", f"{commit}:{path}"], capture_output=True)
    return done.stdout if done.returncode == 0 else None


def full_commit(mirror: Path, commit: str) -> str | None:
    done = subprocess.run(["git", "-C", str(mirror), "rev-parse", "--verify", "-q", f"{commit}^{{commit}}"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def matches(item: dict, data: bytes | None) -> bool:
    if data is not None and item.get("upstream_line_endings") == "CRLF":
        data = data.replace(b"\r\n", b"\n")
    return data is not None and hashlib.sha256(data).hexdigest() == item["sha256"]


def verify(item: dict, mirrors: Path) -> dict:
    """The entry with a full commit and `upstream_verified`, when a clone of its repository is at hand."""
    mirror = mirrors / item.get("repo", "").replace("/", "+") / "repo"
    if "repo" not in item or not mirror.is_dir():
        return item
    commit = full_commit(mirror, item["commit"])
    if commit and matches(item, upstream_bytes(mirror, commit, item["upstream"])):
        return item | {"commit": commit, "upstream_verified": True}
    if item.get("note") == UNRECORDED_COMMIT:
        history = subprocess.run(["git", "-C", str(mirror), "log", "--format=%H", "--", item["upstream"]],
                                 capture_output=True, text=True).stdout.split()
        found = next((c for c in history if matches(item, upstream_bytes(mirror, c, item["upstream"]))), None)
        if found:
            return item | {"commit": found, "upstream_verified": True,
                           "note": "the commit was not recorded when copying; this one holds exactly these bytes"}
    return item | {"upstream_verified": False}


def build(specs: Path, mirrors: Path | None = None) -> dict:
    files = [entry(specs, path) for path in sorted(specs.rglob("*"))
             if path.is_file() and path.name not in NOT_LISTED]
    if mirrors is not None:
        files = [verify(item, mirrors) for item in files]
    return {
        "about": "The reference specs the tests read, pinned: tests/specs.py downloads each file from "
                 "base_url/repo/commit/upstream (or copies it from in_repo) and refuses it unless its sha256 matches. "
                 "The hashes are of the copies in ../shared/specs, which were transcribed from the sources named. "
                 "upstream_verified: true means the file's bytes at that commit were compared with a clone of the "
                 "repository and match; false means they were compared and differ (that file's download will be "
                 "refused); absent means no clone was at hand to compare (short commits as recorded when copying). "
                 "Files that cannot equal upstream bytes: those with upstream_line_endings CRLF (transcribed with "
                 "LF; the download converts CRLF to LF before checking) and those with in_repo (extracted from "
                 "recordings: no upstream file holds them, so they are kept in this repository).",
        "base_url": RAW_BASE_URL,
        "files": files,
    }


def dumps(manifest: dict) -> str:
    """JSON with one line per file, so a changed file is a one-line diff."""
    head = {key: value for key, value in manifest.items() if key != "files"}
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    files = ",\n".join(f"  {json.dumps(item)}" for item in manifest["files"])
    return "{\n" + "\n".join(lines) + '\n "files": [\n' + files + "\n ]\n}\n"


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2):
        raise SystemExit("usage: python tests/specs_manifest.py SPECS_FOLDER [MIRRORS]")
    specs = Path(argv[0]).resolve()
    manifest = build(specs, Path(argv[1]) if len(argv) == 2 else None)
    MANIFEST.write_text(dumps(manifest))
    print(f"{MANIFEST.relative_to(REPO)}: {len(manifest['files'])} files from {specs}")


if __name__ == "__main__":
    main(sys.argv[1:])
