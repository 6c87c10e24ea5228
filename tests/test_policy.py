"""`amlops policy apply|show` against a loopback fake of Azure DevOps (tests/fakes/azure_devops.py).

The fake replays the OPTIONS and ResourceAreas answers recorded from dev.azure.com, stores policies the
way the service does (matchKind `Exact`, `false` settings dropped) and validates every POST/PUT body
against `PolicyConfiguration` of the official policy.json; each test ends by checking that no invalid
body was sent and that no request went to a route the fake does not know.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from click.testing import CliRunner, Result

from amlops import policy
from amlops.errors import AmlopsError
from fakes.azure_devops import BUILD, COMMENTS, MIN_REVIEWERS, FakeAzureDevOps
from support import SPECS

TOKEN = "pat-0123456789-secret"
PROJECT = "Fabrikam Fiber"
REPO = "amlops"
PIPELINE = "amlops-ci"
REF = "refs/heads/main"
PIPELINE_ENV = ("AZURE_DEVOPS_EXT_PAT", "SYSTEM_ACCESSTOKEN", "SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT",
                "BUILD_REPOSITORY_NAME", "AMLOPS_DEBUG", "SYSTEM_DEBUG")


@pytest.fixture
def sdk_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The azure-devops client caches OPTIONS and ResourceAreas per process and on disk: start empty."""
    cache_dir = tmp_path / "azure-devops-cache"
    cache_dir.mkdir()
    monkeypatch.setenv("AZURE_DEVOPS_CACHE_DIR", str(cache_dir))  # read when the SDK is first imported
    from azure.devops import _file_cache, client, connection

    options = _file_cache.get_cache("options", cache_dir=str(cache_dir))
    monkeypatch.setattr(client, "OPTIONS_FILE_CACHE", options)
    resources = _file_cache.get_cache("resources", cache_dir=str(cache_dir))
    monkeypatch.setattr(connection, "RESOURCE_FILE_CACHE", resources)
    monkeypatch.setattr(client.Client, "_locations_cache", {})
    monkeypatch.setattr(connection, "_deployment_level_resource_areas", {})
    for name in PIPELINE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(sdk_caches: None) -> Iterator[FakeAzureDevOps]:
    with FakeAzureDevOps(SPECS, token=TOKEN, page_size=2) as service:
        project = service.add_project(PROJECT)
        service.add_project("Other project")
        service.add_repository(project, REPO)
        service.add_repository(project, "website")
        service.add_definition(project, PIPELINE)
        service.add_definition(project, "website-ci")
        yield service
        assert service.invalid_bodies == [], "a request body did not validate against policy.json"
        assert service.unhandled == [], "a request went to a route the fake does not serve"


def project_of(fake: FakeAzureDevOps):
    return next(project for project in fake.projects if project.name == PROJECT)


def repository_id(fake: FakeAzureDevOps, name: str = REPO) -> str:
    return next(repo.id for repo in fake.repositories if repo.name == name)


def definition_id(fake: FakeAzureDevOps, name: str = PIPELINE) -> int:
    return next(definition.id for definition in fake.definitions if definition.name == name)


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    from amlops.cli import main

    env = {"AZURE_DEVOPS_EXT_PAT": TOKEN} if env is None else env
    return CliRunner().invoke(main, ["policy", *args], env=env)


def apply(fake: FakeAzureDevOps, *extra: str, env: dict[str, str] | None = None) -> Result:
    return cli("apply", "--org", fake.org_url, "--project", PROJECT, "--repo", REPO, "--branch", "main",
               "--build-pipeline", PIPELINE, *extra, env=env)


def show(fake: FakeAzureDevOps) -> Result:
    return cli("show", "--org", fake.org_url, "--project", PROJECT, "--repo", REPO)


def lines(result: Result) -> list[str]:
    return result.output.strip().splitlines()


def actions(result: Result) -> dict[str, str]:
    """{policy type name: what apply said it did} from apply's output."""
    found = {}
    for line in lines(result):
        for verb in ("would create", "would update", "created", "updated", "unchanged"):
            if line.startswith(verb):
                found[line[len(verb):].strip().split("  ")[0]] = verb
                break
    return found


def calls(fake: FakeAzureDevOps, since: int = 0) -> list[str]:
    """'METHOD /_apis/...' per request received (lower case)."""
    return [f"{request.method} /_apis{request.path.split('/_apis', 1)[1]}".lower()
            for request in fake.requests[since:]]


def by_type(fake: FakeAzureDevOps) -> dict[str, dict[str, Any]]:
    return {stored["type"]["id"]: stored for stored in fake.policies()}


def assert_one_error_line(result: Result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    assert TOKEN not in result.output
    assert len(lines(result)) == 1, result.output
    line = lines(result)[0]
    assert line.startswith("error: ")
    for word in words:
        assert word in line
    return line


# ----- apply ------------------------------------------------------------------------------------------------

def test_first_apply_creates_the_three_policies_on_exactly_that_branch(fake: FakeAzureDevOps) -> None:
    result = apply(fake)

    assert result.exit_code == 0, result.output
    assert actions(result) == {"Build": "created", "Minimum number of reviewers": "created",
                               "Comment requirements": "created"}
    assert calls(fake) == [
        "options /_apis", "get /_apis/resourceareas", f"get /_apis/git/repositories/{REPO}",
        "get /_apis/build/definitions", "get /_apis/git/policy/configurations",
        "post /_apis/policy/configurations", "post /_apis/policy/configurations",
        "post /_apis/policy/configurations"]
    stored = by_type(fake)
    assert set(stored) == {BUILD, MIN_REVIEWERS, COMMENTS}
    scope = [{"refName": REF, "matchKind": "Exact", "repositoryId": repository_id(fake)}]
    for item in stored.values():
        assert item["isBlocking"] is True and item["isEnabled"] is True
        assert item["settings"]["scope"] == scope
    build = stored[BUILD]["settings"]
    assert build["buildDefinitionId"] == definition_id(fake)
    assert build["queueOnSourceUpdateOnly"] is True and build["validDuration"] == 0  # expires when main moves
    assert "manualQueueOnly" not in build  # sent as false, dropped by the service
    reviewers = stored[MIN_REVIEWERS]["settings"]
    assert reviewers["minimumApproverCount"] == 1 and reviewers["resetOnSourcePush"] is True
    assert "creatorVoteCounts" not in reviewers and "allowDownvotes" not in reviewers
    assert set(stored[COMMENTS]["settings"]) == {"scope"}


def test_the_bodies_sent_say_exactly_what_the_policies_need(fake: FakeAzureDevOps) -> None:
    apply(fake)

    bodies = {request.body["type"]["id"]: request.body for request in fake.writes()}
    assert bodies[MIN_REVIEWERS]["settings"]["creatorVoteCounts"] is False
    assert bodies[MIN_REVIEWERS]["settings"]["allowDownvotes"] is False
    assert bodies[BUILD]["settings"]["manualQueueOnly"] is False
    assert bodies[BUILD]["settings"]["displayName"] == PIPELINE
    for body in bodies.values():
        assert set(body) == {"type", "isBlocking", "isEnabled", "settings"}
        expected = [{"repositoryId": repository_id(fake), "refName": REF, "matchKind": "exact"}]
        assert body["settings"]["scope"] == expected


def test_every_request_carries_the_pat_and_an_api_version(fake: FakeAzureDevOps) -> None:
    apply(fake)

    expected = "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()
    assert {request.headers.get("authorization") for request in fake.requests} == {expected}
    assert all(request.api_version for request in fake.requests if request.method != "OPTIONS")


def test_second_apply_changes_nothing(fake: FakeAzureDevOps) -> None:
    apply(fake)
    before = len(fake.requests)

    result = apply(fake)

    assert result.exit_code == 0, result.output
    assert set(actions(result).values()) == {"unchanged"} and len(actions(result)) == 3
    assert fake.writes()[3:] == []
    # three policies, two a page: the second page is read with the continuation token
    assert calls(fake, before) == [
        f"get /_apis/git/repositories/{REPO}", "get /_apis/build/definitions",
        "get /_apis/git/policy/configurations", "get /_apis/git/policy/configurations"]
    assert fake.requests[-1].query.get("continuationToken")
    assert all(stored["revision"] == 1 for stored in fake.policies())


def test_a_changed_reviewer_count_updates_that_policy_only(fake: FakeAzureDevOps) -> None:
    apply(fake)
    reviewers_id = by_type(fake)[MIN_REVIEWERS]["id"]

    result = apply(fake, "--min-reviewers", "2")

    assert result.exit_code == 0, result.output
    assert actions(result) == {"Build": "unchanged", "Minimum number of reviewers": "updated",
                               "Comment requirements": "unchanged"}
    assert "minimumApproverCount 1 -> 2" in result.output
    writes = fake.writes()[3:]
    assert [(request.method, request.path.rsplit("/", 1)[1]) for request in writes] == [
        ("PUT", str(reviewers_id))]
    stored = by_type(fake)[MIN_REVIEWERS]
    assert stored["settings"]["minimumApproverCount"] == 2 and stored["revision"] == 2
    assert len(fake.policies()) == 3


def test_dry_run_prints_the_plan_and_sends_no_write(fake: FakeAzureDevOps) -> None:
    result = apply(fake, "--dry-run")

    assert result.exit_code == 0, result.output
    assert set(actions(result).values()) == {"would create"} and len(actions(result)) == 3
    assert lines(result)[-1] == "dry run: nothing was changed"
    assert fake.writes() == [] and fake.policies() == []

    apply(fake)
    result = apply(fake, "--dry-run", "--min-reviewers", "3")

    assert actions(result)["Minimum number of reviewers"] == "would update"
    assert "minimumApproverCount 1 -> 3" in result.output
    assert len(fake.writes()) == 3
    assert by_type(fake)[MIN_REVIEWERS]["settings"]["minimumApproverCount"] == 1


def test_policies_of_other_branches_repositories_and_pipelines_are_left_alone(fake: FakeAzureDevOps) -> None:
    project, repo, website = project_of(fake), repository_id(fake), repository_id(fake, "website")
    foreign = [
        _policy_body(MIN_REVIEWERS, repo, "refs/heads/develop", minimumApproverCount=3),
        _policy_body(MIN_REVIEWERS, website, REF, minimumApproverCount=4),
        _policy_body(COMMENTS, repo, "refs/heads/release/", matchKind="prefix"),
        _policy_body(BUILD, repo, REF, buildDefinitionId=definition_id(fake, "website-ci"),
                     validDuration=720),
        _policy_body(MIN_REVIEWERS, None, "refs/heads/", matchKind="prefix", minimumApproverCount=5),
    ]
    stored_before = [fake.add_policy(project, body) for body in foreign]

    first = apply(fake)
    second = apply(fake)

    assert set(actions(first).values()) == {"created"}
    assert set(actions(second).values()) == {"unchanged"}
    assert len(fake.writes()) == 3 and all(request.method == "POST" for request in fake.writes())
    after = {stored["id"]: stored for stored in fake.policies()}
    assert all(after[before["id"]] == before for before in stored_before)


def test_an_existing_policy_is_found_on_a_later_page_and_its_other_settings_are_kept(
        fake: FakeAzureDevOps) -> None:
    project, repo = project_of(fake), repository_id(fake)
    # eight policies that also apply to main, before ours
    for prefix in ("refs/heads/", "refs/heads/m", "refs/heads/ma", "refs/heads/mai"):
        fake.add_policy(project, _policy_body(COMMENTS, None, prefix, matchKind="prefix"))
        fake.add_policy(project, _policy_body(MIN_REVIEWERS, repo, "refs/heads/", matchKind="prefix",
                                              minimumApproverCount=2))
    ours = fake.add_policy(project, {
        **_policy_body(MIN_REVIEWERS, repo, "refs/heads/MAIN", minimumApproverCount=1, resetOnSourcePush=True,
                       blockLastPusherVote=True, requiredReviewerIds=None),
        "isEnabled": False})

    result = apply(fake)

    assert actions(result)["Minimum number of reviewers"] == "updated"
    assert "enabled no -> yes" in result.output
    assert sum(1 for line in calls(fake) if line.endswith("git/policy/configurations")) == 5  # 9 on 2 a page
    stored = {item["id"]: item for item in fake.policies()}[ours["id"]]
    assert stored["isEnabled"] is True and stored["revision"] == 2
    assert stored["settings"]["blockLastPusherVote"] is True  # not ours to manage: kept
    assert stored["settings"]["scope"] == [{"refName": REF, "matchKind": "Exact", "repositoryId": repo}]
    assert actions(apply(fake)) == {"Build": "unchanged", "Minimum number of reviewers": "unchanged",
                                    "Comment requirements": "unchanged"}


def test_a_policy_deleted_meanwhile_is_created_again(fake: FakeAzureDevOps) -> None:
    apply(fake)
    comments_id = by_type(fake)[COMMENTS]["id"]
    url = f"{fake.org_url}/{project_of(fake).id}/_apis/policy/configurations/{comments_id}?api-version=7.1"
    assert requests.delete(url, auth=("", TOKEN), timeout=10).status_code == 204

    result = apply(fake)

    assert actions(result) == {"Build": "unchanged", "Minimum number of reviewers": "unchanged",
                               "Comment requirements": "created"}
    assert len(fake.policies()) == 3


def test_a_pipeline_can_be_given_by_id_when_names_repeat(fake: FakeAzureDevOps) -> None:
    duplicate = fake.add_definition(project_of(fake), PIPELINE, path="\\old")

    result = apply(fake)

    line = assert_one_error_line(result, f"2 pipelines are named '{PIPELINE}'", "--build-pipeline")
    assert str(duplicate.id) in line and fake.writes() == []
    result = cli("apply", "--org", fake.org_url, "--project", PROJECT, "--repo", REPO,
                 "--build-pipeline", str(duplicate.id))
    assert result.exit_code == 0, result.output
    assert by_type(fake)[BUILD]["settings"]["buildDefinitionId"] == duplicate.id


# ----- show -------------------------------------------------------------------------------------------------

def test_show_lists_every_policy_that_applies_to_the_branch(fake: FakeAzureDevOps) -> None:
    project = project_of(fake)
    apply(fake, "--min-reviewers", "2")
    fake.add_policy(project, _policy_body(COMMENTS, None, "refs/heads/", matchKind="prefix"))
    fake.add_policy(project, _policy_body(COMMENTS, repository_id(fake), "refs/heads/develop"))
    before = len(fake.requests)

    result = show(fake)

    assert result.exit_code == 0, result.output
    assert lines(result)[0] == f"4 policies apply to {REF} of {PROJECT}/{REPO}:"
    body = lines(result)[1:]
    assert len(body) == 4 and not any("develop" in line for line in body)
    build = next(line for line in body if line.strip().startswith("Build"))
    assert "blocking, enabled" in build and f"buildDefinitionId={definition_id(fake)}" in build
    assert "this repository, exact refs/heads/main" in build
    assert any("minimumApproverCount=2" in line for line in body)
    assert any("every repository, prefix refs/heads/" in line for line in body)
    assert all(request.method == "GET" for request in fake.requests[before:])


def test_show_says_when_no_policy_applies(fake: FakeAzureDevOps) -> None:
    result = show(fake)

    assert result.exit_code == 0, result.output
    assert lines(result) == [f"no policies apply to {REF} of {PROJECT}/{REPO}"]


# ----- tokens and errors ------------------------------------------------------------------------------------

def test_the_job_token_is_sent_as_bearer_and_a_pat_wins_over_it(fake: FakeAzureDevOps) -> None:
    result = apply(fake, env={"SYSTEM_ACCESSTOKEN": TOKEN})

    assert result.exit_code == 0, result.output
    assert {request.headers["authorization"] for request in fake.requests} == {f"Bearer {TOKEN}"}

    before = len(fake.requests)
    result = apply(fake, env={"AZURE_DEVOPS_EXT_PAT": TOKEN, "SYSTEM_ACCESSTOKEN": "stale-job-token"})
    assert result.exit_code == 0, result.output
    assert all(request.headers["authorization"].startswith("Basic ") for request in fake.requests[before:])


@pytest.mark.parametrize("unauthorized_body", ["json", "html"])
def test_a_bad_token_gives_one_clear_line(sdk_caches: None, unauthorized_body: str) -> None:
    with FakeAzureDevOps(SPECS, token=TOKEN, unauthorized_body=unauthorized_body) as service:
        service.add_repository(service.add_project(PROJECT), REPO)
        wrong = "wrong-token-987654"

        result = apply(service, env={"AZURE_DEVOPS_EXT_PAT": wrong})

        line = assert_one_error_line(result, "HTTP 401", "AZURE_DEVOPS_EXT_PAT", service.org_url)
        assert wrong not in line
        assert [request.status for request in service.requests] == [401]  # asked once, not retried


def test_no_token_at_all_is_refused_before_any_request(fake: FakeAzureDevOps) -> None:
    result = apply(fake, env={})

    assert_one_error_line(result, "AZURE_DEVOPS_EXT_PAT", "SYSTEM_ACCESSTOKEN")
    assert fake.requests == []


def test_a_server_error_on_create_is_reported_once_and_not_retried(fake: FakeAzureDevOps) -> None:
    fake.fail_next(5, method="POST")

    result = apply(fake)

    assert_one_error_line(result, "HTTP 500", "create the Build policy", "TF400898")
    assert [request.method for request in fake.requests].count("POST") == 1
    assert fake.policies() == []


def test_after_a_server_error_the_lines_already_printed_stay_and_the_error_names_the_policy(
        fake: FakeAzureDevOps) -> None:
    build = _policy_body(BUILD, repository_id(fake), REF, buildDefinitionId=definition_id(fake),
                         queueOnSourceUpdateOnly=True, validDuration=0, displayName=PIPELINE)
    fake.add_policy(project_of(fake), build)
    fake.fail_next(1, method="POST", path_contains="policy/configurations")

    result = apply(fake)

    assert result.exit_code == 1 and TOKEN not in result.output
    assert lines(result)[0].startswith("unchanged     Build") and lines(result)[1].startswith("error: ")
    assert "create the Minimum number of reviewers policy (HTTP 500" in lines(result)[1]
    assert [request.method for request in fake.requests].count("POST") == 1 and len(lines(result)) == 2


def test_reads_are_retried_on_a_passing_server_error(fake: FakeAzureDevOps, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    monkeypatch.setattr(policy, "RETRY_BACKOFF_SECONDS", 0)
    fake.fail_next(1, method="GET", path_contains="git/policy/configurations")

    result = apply(fake)

    assert result.exit_code == 0, result.output
    statuses = [request.status for request in fake.requests
                if request.path.endswith("git/policy/configurations")]
    assert statuses == [500, 200]

    fake.fail_next(10, method="GET", path_contains="git/policy/configurations")
    before = len(fake.requests)
    result = apply(fake)
    assert_one_error_line(result, "HTTP 500", "list the policies")
    assert len(fake.requests) - before == 2 + 3  # repository, pipeline, then the list asked three times


@pytest.mark.parametrize("option, value, words", [
    ("--project", "Nope", ["project 'Nope' was not found", "TF200016"]),
    ("--repo", "nope", ["repository 'nope' was not found", "TF401019"]),
    ("--build-pipeline", "nope", ["no pipeline named 'nope'", "--build-pipeline"]),
    ("--org", "dev.azure.com/fabrikam", ["--org must be the organization URL"]),
])
def test_unknown_names_give_one_clear_line(fake: FakeAzureDevOps, option: str, value: str,
                                           words: list[str]) -> None:
    arguments = {"--org": fake.org_url, "--project": PROJECT, "--repo": REPO, "--build-pipeline": PIPELINE}
    arguments[option] = value

    result = cli("apply", *[item for pair in arguments.items() for item in pair])

    assert_one_error_line(result, *words)
    assert fake.writes() == []


def test_debug_shows_the_traceback(fake: FakeAzureDevOps) -> None:
    from amlops.cli import main

    arguments = ["--debug", "policy", "apply", "--org", fake.org_url, "--project", "Nope", "--repo", REPO,
                 "--build-pipeline", PIPELINE]
    result = CliRunner().invoke(main, arguments, env={"AZURE_DEVOPS_EXT_PAT": TOKEN})

    assert result.exit_code == 1 and "Traceback" in result.output and TOKEN not in result.output


# ----- the fake itself, and the comparison rules ------------------------------------------------------------

def test_the_fake_refuses_a_body_that_policy_json_does_not_allow(fake: FakeAzureDevOps) -> None:
    url = f"{fake.org_url}/{PROJECT}/_apis/policy/configurations"
    headers = {"Accept": "application/json;api-version=7.1"}
    good = _policy_body(COMMENTS, repository_id(fake), REF)
    bad = [{**good, "isBlocking": "yes"}, {**good, "is_blocking": True},
           {**good, "type": {"id": "not-a-uuid"}}, {**good, "settings": {"scope": []}}]

    statuses = [requests.post(url, json=body, headers=headers, auth=("", TOKEN), timeout=10).status_code
                for body in [*bad, good]]

    assert statuses == [400, 400, 400, 400, 200]
    assert len(fake.invalid_bodies) == 4
    fake.invalid_bodies.clear()


def test_the_fake_accepts_the_official_request_examples(fake: FakeAzureDevOps) -> None:
    folder = SPECS / "azure-devops" / "rest-7.1" / "policy-examples" / "configurations"
    examples = sorted(folder.glob("P*.json"))  # the POST and PUT examples
    url = f"{fake.org_url}/{PROJECT}/_apis/policy/configurations"
    headers = {"Accept": "application/json;api-version=7.1"}
    for example in examples:
        body = json.loads(example.read_text(encoding="utf-8-sig"))["parameters"]["body"]
        for entry in body["settings"]["scope"]:
            entry["repositoryId"] = entry["repositoryId"] and repository_id(fake)
        if example.name.startswith("PUT"):
            target = fake.add_policy(project_of(fake), body)["id"]
            answer = requests.put(f"{url}/{target}", json=body, headers=headers, auth=("", TOKEN), timeout=10)
        else:
            answer = requests.post(url, json=body, headers=headers, auth=("", TOKEN), timeout=10)
        assert answer.status_code == 200, (example.name, answer.text)
    assert len(examples) == 8


def test_the_fake_pages_the_project_policy_list(fake: FakeAzureDevOps) -> None:
    for number in range(5):
        fake.add_policy(project_of(fake), _policy_body(COMMENTS, None, f"refs/heads/b{number}"))
    url = f"{fake.org_url}/{PROJECT}/_apis/policy/configurations"
    seen, token = [], None
    while True:
        answer = requests.get(url, params={"continuationToken": token} if token else {}, auth=("", TOKEN),
                              headers={"Accept": "application/json;api-version=7.1"}, timeout=10)
        seen += [item["id"] for item in answer.json()["value"]]
        token = answer.headers.get("X-MS-ContinuationToken")
        if not token:
            break
    assert seen == sorted(item["id"] for item in fake.policies()) and len(seen) == 5


def test_what_the_server_changes_does_not_count_as_a_difference() -> None:
    branch = policy.Branch.parse("https://dev.azure.com/fabrikam/", PROJECT, REPO, "main")
    wanted = policy.wanted_policies("AB12-cd", branch, 7, PIPELINE, 2)
    as_stored = {
        BUILD: {"buildDefinitionId": 7, "queueOnSourceUpdateOnly": True, "displayName": PIPELINE,
                "validDuration": 0.0, "filenamePatterns": None},
        MIN_REVIEWERS: {"minimumApproverCount": 2, "resetOnSourcePush": True, "requiredReviewerIds": []},
        COMMENTS: {},
    }
    scope = [{"refName": "refs/heads/Main", "matchKind": "Exact", "repositoryId": "ab12-CD"}]
    existing = [policy.Policy(number, item.type_id, item.name, True, True,
                              {**as_stored[item.type_id], "scope": scope})
                for number, item in enumerate(wanted, 1)]

    steps = policy.plan(wanted, existing, "ab12-cd", branch.ref_name)

    assert [(step.action, step.policy_id) for step in steps] == [("unchanged", 1), ("unchanged", 2),
                                                                 ("unchanged", 3)]
    flipped = policy.Policy(2, MIN_REVIEWERS, "x", True, True,
                            {**existing[1].settings, "creatorVoteCounts": True, "allowDownvotes": True})
    assert policy.differences(wanted[1], flipped) == ("creatorVoteCounts True -> (unset)",
                                                      "allowDownvotes True -> (unset)")


def test_a_build_policy_for_another_pipeline_is_not_ours() -> None:
    branch = policy.Branch.parse("https://dev.azure.com/fabrikam", PROJECT, REPO, "refs/heads/main")
    wanted = policy.wanted_policies("r1", branch, 7, PIPELINE, 1)[0]
    scope = [{"refName": REF, "matchKind": "Exact", "repositoryId": "r1"}]

    assert policy.is_ours(wanted, policy.Policy(1, BUILD, "Build", True, True,
                                                {"buildDefinitionId": 7, "scope": scope}), "r1", REF)
    assert not policy.is_ours(wanted, policy.Policy(1, BUILD, "Build", True, True,
                                                    {"buildDefinitionId": 8, "scope": scope}), "r1", REF)
    assert not policy.is_ours(wanted, policy.Policy(1, BUILD, "Build", True, True,
                                                    {"buildDefinitionId": 7, "scope": scope}), "r2", REF)


def test_branch_names_and_bad_input() -> None:
    branch = policy.Branch.parse("https://dev.azure.com/x/", "p", "r", "release/1")
    assert branch.ref_name == "refs/heads/release/1"
    assert policy.Branch.parse("https://dev.azure.com/x", "p", "r", "refs/heads/main").org_url == \
        "https://dev.azure.com/x"
    with pytest.raises(AmlopsError, match="--branch is empty"):
        policy.Branch.parse("https://dev.azure.com/x", "p", "r", " ")
    with pytest.raises(AmlopsError, match="unexpanded macro"):
        policy.apply_branch_policies(branch, PIPELINE, env={"SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"})


def _policy_body(type_id: str, repository: str | None, ref_name: str, matchKind: str = "exact",
                 **settings: Any) -> dict[str, Any]:
    scope = [{"repositoryId": repository, "refName": ref_name, "matchKind": matchKind}]
    return {"isEnabled": True, "isBlocking": True, "type": {"id": type_id},
            "settings": {**settings, "scope": scope}}


def test_show_as_json_has_stable_fields(fake: FakeAzureDevOps) -> None:
    apply(fake)
    result = cli("show", "--org", fake.org_url, "--project", PROJECT, "--repo", REPO, "--output", "json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["repository_id"] == repository_id(fake)
    assert {policy["type_name"] for policy in shown["policies"]} >= {"Build", "Minimum number of reviewers"}
    assert set(shown["policies"][0]) == {"id", "type_id", "type_name", "is_blocking", "is_enabled", "settings"}
