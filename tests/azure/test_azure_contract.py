"""The transport-level contract, through the real azure-ai-ml clients and their azure-core pipelines: what is
retried (429 with Retry-After, 500, a connection reset), what is not (403, 404: one request, one clear
line), paging, and the request bodies checked against the official ARM spec."""
from __future__ import annotations

import json
import time

import pytest

from amlops.errors import AmlopsError, NotFoundError
from azure_support import FAST_RETRIES, RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, forget_current_cloud

MODELS = "/models/safe-driver"


def register(ws, tmp_path, count: int = 1) -> list:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "model.txt").write_text("tree 0\n")
    return [ws.register_model("safe-driver", model, {"auc": "0.7"}, {}, None) for _ in range(count)]


def test_429_with_retry_after_is_retried_after_the_wait_the_service_asked_for(azure_ws, fake, tmp_path):
    register(azure_ws, tmp_path)
    fake.fail_next("GET", f"{MODELS}/versions", status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert azure_ws.latest_model("safe-driver").version == 1
    assert time.monotonic() - started >= 0.95, "Retry-After: 1 was not honoured"
    statuses = [r.status for r in fake.calls("GET", f"{MODELS}/versions")]
    assert statuses[-2:] == [429, 200]


def test_500_then_success_is_retried_for_an_idempotent_put(azure_ws, fake, tmp_path):
    fake.fail_next("PUT", f"{MODELS}/versions/", status=500, times=2)
    assert register(azure_ws, tmp_path)[0].version == 1
    assert [r.status for r in fake.calls("PUT", f"{MODELS}/versions/")] == [500, 500, 201]


def test_a_connection_reset_is_retried(azure_ws, fake, tmp_path):
    register(azure_ws, tmp_path)
    fake.fail_next("GET", f"{MODELS}/versions", reset=True)
    assert azure_ws.get_model("safe-driver").version == 1
    assert [r.status for r in fake.calls("GET", f"{MODELS}/versions")][-2:] == [-1, 200]


def test_a_server_that_keeps_failing_gets_the_default_number_of_retries_then_one_line(azure_ws, fake):
    fake.fail_next("GET", "/jobs/nightly_run", status=503, times=100)
    with pytest.raises(AmlopsError, match=r"^Azure kept failing for job nightly_run in workspace mlw-amlops after "
                                          r"retries \(503 InternalServerError\)"):
        azure_ws.get_run("nightly_run")
    # azure-core's RetryPolicy defaults: 3 retries on a retryable status, then the answer is given up on
    assert [r.status for r in fake.calls("GET", "/jobs/nightly_run")] == [503] * 4


def test_404_is_one_request_and_a_not_found_error(azure_ws, fake):
    with pytest.raises(NotFoundError, match="pipeline nope version 3 is not published in Azure ML workspace "
                                            "mlw-amlops; run `amlops publish --backend azure <pipeline.yml>` first"):
        azure_ws.get_pipeline("nope", "3")
    with pytest.raises(NotFoundError, match="run ghost_job not found in Azure ML workspace mlw-amlops"):
        azure_ws.get_run("ghost_job")
    assert len(fake.calls("GET", "/components/nope/versions/3")) == 1
    assert len(fake.calls("GET", "/jobs/ghost_job")) == 1
    assert azure_ws.latest_model("never-registered") is None


def test_403_names_the_missing_permission_and_the_role_without_retrying(azure_ws, fake, tmp_path):
    fake.denied["/models/"] = "Microsoft.MachineLearningServices/workspaces/models/versions/write"
    with pytest.raises(AmlopsError) as raised:
        register(azure_ws, tmp_path)
    message = str(raised.value)
    assert message.startswith("permission denied for registering model safe-driver in workspace mlw-amlops: the "
                              "identity may not Microsoft.MachineLearningServices/workspaces/models/versions/write; "
                              "assign it AzureML Data Scientist (or Contributor) on the workspace")
    assert "\n" not in message
    assert [r.status for r in fake.requests if "/models/" in r.path] == [403]


def test_quota_errors_say_so(azure_ws, fake, tmp_path):
    fake.fail_next("PUT", f"{MODELS}/versions/", status=409, code="QuotaExceeded",
                   message="The workspace has reached its quota of 10000 model versions.")
    with pytest.raises(AmlopsError, match=r"^quota exceeded for registering model safe-driver in workspace "
                                          r"mlw-amlops: The workspace has reached its quota"):
        register(azure_ws, tmp_path)


def test_lists_follow_next_links(azure_ws, fake, tmp_path):
    register(azure_ws, tmp_path, count=5)
    assert [m.version for m in azure_ws.list_models("safe-driver")] == [1, 2, 3, 4, 5]
    pages = fake.calls("GET", f"{MODELS}/versions")
    assert any("$skip" in r.query for r in pages), "the fake pages by 2, so nextLink had to be followed"


def test_every_request_body_is_checked_against_the_spec(fake):
    """The check itself: a body the spec refuses is answered 400 and recorded (this test must be able to fail)."""
    path = f"{fake.prefix}/jobs/bad_job"
    body = {"properties": {"jobType": "Pipeline", "experimentName": "x", "computeId": 42, "bogus": True,
                           "status": "Running"}}
    answer = fake.handle("PUT", f"https://management.azure.com{path}?api-version=2024-01-01-preview",
                         {"Authorization": "Bearer t"}, json.dumps(body).encode())
    assert answer.status == 400
    text = "\n".join(fake.problems)
    assert "Jobs_CreateOrUpdate (2024-01-01-preview)" in text
    assert "body.properties.computeId must be of type string" in text
    assert "body.properties.bogus is not a property of this type" in text
    assert "body.properties.status is read-only" in text
    fake.problems.clear()


def test_the_validator_accepts_the_official_examples():
    """allOf merged and discriminators resolved: the spec's own examples pass, except the few where the examples
    and the spec disagree (kept here so a regression in the validator shows up)."""
    from aml_fake import SPEC_FOLDERS
    from swagger import Spec

    known_disagreements = {"Compute/delete.json", "DataContainer/", "FineTuningJob/", "AutoMLJob/", "package.json",
                           "listNotebookAccessToken.json"}
    for folder in SPEC_FOLDERS.values():
        spec = Spec(folder)
        checked = 0
        for operation in spec.operations:
            for reference in (operation.spec.get("x-ms-examples") or {}).values():
                example = json.loads((operation.file.parent / reference["$ref"]).read_text(encoding="utf-8-sig"))
                problems = _example_problems(spec, operation, example)
                checked += 1
                if not any(known in reference["$ref"] for known in known_disagreements):
                    assert problems == [], reference["$ref"]
        assert checked > 200


def _example_problems(spec, operation, example: dict) -> list[str]:
    parameters = example["parameters"]
    path = operation.template
    for key, value in parameters.items():
        path = path.replace("{" + key + "}", str(value))
    if "{" in path:  # an example that names a path parameter differently from the spec
        return []
    body = next((parameters[p["name"]] for p in operation.parameters
                 if p.get("in") == "body" and p["name"] in parameters), None)
    problems = spec.validate_request(operation.method, path, {"api-version": parameters.get("api-version", "")},
                                     body)
    for status, answer in example.get("responses", {}).items():
        problems += spec.validate_response(operation.method, path, int(status), answer.get("body"))
    return problems


def test_sovereign_cloud_uses_its_resource_manager_and_token_scope(fake, credential, monkeypatch):
    from amlops.workspace.azure.workspace import AzureWorkspace

    forget_current_cloud(monkeypatch)
    fake.arm_host = "management.chinacloudapi.cn"
    ws = AzureWorkspace(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, credential, cloud="AzureChinaCloud",
                        transport=fake.transport(), client_kwargs=dict(FAST_RETRIES))
    assert ws.cloud.arm_endpoint == "https://management.chinacloudapi.cn/"
    assert ws.cloud.authority == "login.chinacloudapi.cn"
    assert ws.location() == "westeurope"
    assert {r.host for r in fake.requests} == {"management.chinacloudapi.cn"}
    assert set(credential.scopes) == {"https://management.chinacloudapi.cn/.default"}


def test_credentials_follow_the_cloud(monkeypatch):
    from amlops.workspace.azure.cloud import make_credential, resolve_cloud

    china = resolve_cloud(None, {"AZURE_CLOUD": "azurechinacloud"})
    assert china.name == "AzureChinaCloud"
    explicit = make_credential(china, "tenant", "client", "secret")
    assert type(explicit).__name__ == "ClientSecretCredential"
    assert explicit._authority == "https://login.chinacloudapi.cn"
    with pytest.raises(AmlopsError, match="needs all of tenant id, client id and client secret"):
        make_credential(china, "tenant", None, None)
    with pytest.raises(AmlopsError, match="unknown Azure cloud 'Mars'"):
        resolve_cloud("Mars")
