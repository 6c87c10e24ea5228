"""The local twin of a managed online endpoint, all real: Azure ML inference servers behind Debian's caddy.

The three cases of a blue/green rollout, with a client calling the endpoint the whole time: v1; v2 whose
scoring script fails its smoke test (traffic stays on v1, v2 deleted); v3 that passes (traffic on v3,
v1 kept or deleted as asked). Not one request of the client may fail.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from amlops.deploy.online_endpoint.local import LocalEndpoints, _local_name
from amlops.deploy.online_endpoint.model import DeploymentSpec
from amlops.deploy.online_endpoint.rollout import RolloutFailed, RolloutPlan, rollout
from amlops.deploy.online_endpoint.router import weighted_upstreams
from amlops.errors import AmlopsError
from amlops.processes import process_alive
from online_support import ClientLoop, request_file, scoring_folder, workspace_with_model


def test_weights_become_repeated_upstreams_in_round_robin_order():
    assert weighted_upstreams({"a": 90, "b": 10}) == ["a", "b"] + ["a"] * 8
    assert weighted_upstreams({"a": 50, "b": 50}) == ["a", "b"]
    assert weighted_upstreams({"a": 100, "b": 0}) == ["a"]
    assert weighted_upstreams({"a": 0}) == []


@pytest.fixture
def endpoints(tmp_path: Path):
    if not shutil.which("caddy"):
        pytest.skip("caddy (apt-get install caddy)")
    backend = LocalEndpoints(workspace_with_model(tmp_path), on_info=lambda line: None)
    yield backend
    for endpoint in backend.list():
        backend.delete(endpoint.name)


def call(uri: str, key: str | None, deployment: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if deployment:
        headers["azureml-model-deployment"] = deployment
    request = urllib.request.Request(uri, data=json.dumps({"data": [[1]]}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
@pytest.mark.parametrize("delete_previous", [False, True])
def test_blue_green_rollout_never_drops_a_request(endpoints: LocalEndpoints, tmp_path: Path, delete_previous):
    model = endpoints.ws.get_model("driver", 1)
    plan = RolloutPlan(request_file(tmp_path), smoke_requests=3, readiness_timeout_s=30)

    first = rollout(endpoints, "driver-ep", DeploymentSpec("build1", model, scoring_folder(tmp_path, "s1", 0.1)), plan)
    assert first.previous is None and first.traffic == {"build1": 100}
    assert first.scoring_uri.startswith("http://127.0.0.1:") and first.key

    with ClientLoop(first.scoring_uri, first.key) as client:
        with pytest.raises(RolloutFailed, match=r"^rollout of build2 to endpoint driver-ep failed: smoke test of "
                                                r"deployment build2 alone failed: HTTP status: expected 200, "
                                                r"got 500.*; traffic is "
                                                r"back to build1 100% and deployment build2 was deleted$"):
            broken = scoring_folder(tmp_path, "s2", broken=True)
            rollout(endpoints, "driver-ep", DeploymentSpec("build2", model, broken), plan)
        after_v2 = endpoints.get("driver-ep")
        assert after_v2.traffic == {"build1": 100} and [d.name for d in after_v2.deployments] == ["build1"]
        assert endpoints.ws.find_deployment(_local_name("driver-ep", "build2")) is None, "the failed server is gone"

        stepped = RolloutPlan(plan.request_file, traffic_steps=(10, 50, 100), delete_previous=delete_previous,
                              smoke_requests=3, readiness_timeout_s=30)
        third = rollout(endpoints, "driver-ep",
                        DeploymentSpec("build3", model, scoring_folder(tmp_path, "s3", 0.3)), stepped)
    assert client.errors == [], f"{len(client.errors)} of {client.total} requests failed: {client.errors[:3]}"
    assert client.answers[0.1] > 0 and client.answers[0.3] > 0, client.answers
    assert third.previous == "build1" and third.traffic["build3"] == 100
    endpoint = endpoints.get("driver-ep")
    names = [d.name for d in endpoint.deployments]
    assert names == (["build3"] if delete_previous else ["build1", "build3"])
    assert third.deleted == (("build1",) if delete_previous else ())
    assert call(third.scoring_uri, third.key)[1] == '{"predictions": [0.3]}'
    if not delete_previous:  # the header still reaches a deployment that has no traffic
        assert call(third.scoring_uri, third.key, "build1") == (200, '{"predictions": [0.1]}')


@pytest.mark.slow
def test_the_router_checks_the_key_and_routes_by_weight_and_header(endpoints: LocalEndpoints, tmp_path: Path):
    model = endpoints.ws.get_model("driver", 1)
    endpoint = endpoints.create("weights", "key")
    key = endpoints.key("weights")
    assert call(endpoint.scoring_uri, key)[0] == 404, "no deployment has traffic yet"
    endpoints.create_deployment("weights", DeploymentSpec("blue", model, scoring_folder(tmp_path, "b", 0.1)))
    endpoints.create_deployment("weights", DeploymentSpec("green", model, scoring_folder(tmp_path, "g", 0.9)))
    endpoints.set_traffic("weights", {"blue": 70, "green": 30})
    answers = [json.loads(call(endpoint.scoring_uri, key)[1])["predictions"][0] for _ in range(20)]
    assert answers.count(0.1) == 14 and answers.count(0.9) == 6, answers
    assert call(endpoint.scoring_uri, key, "green") == (200, '{"predictions": [0.9]}')
    assert call(endpoint.scoring_uri, key, "purple")[0] == 404
    assert call(endpoint.scoring_uri, None)[0] == 401
    assert call(endpoint.scoring_uri, "x" * 43)[0] == 401
    assert key not in (endpoints.root / "weights" / "router.log").read_text()

    with pytest.raises(AmlopsError, match="must be whole percentages that add up to 100"):
        endpoints.set_traffic("weights", {"blue": 70, "green": 20})
    with pytest.raises(AmlopsError, match="still takes 30% of endpoint weights's traffic"):
        endpoints.delete_deployment("weights", "green")
    pid = json.loads((endpoints.root / "weights" / "endpoint.json").read_text())["router_pid"]
    os.kill(pid, signal.SIGKILL)  # the router is gone (a crash, a reboot): the next change starts it again
    while process_alive(pid):
        time.sleep(0.05)
    assert endpoints.get("weights").status == "RouterDown"
    endpoints.set_traffic("weights", {"blue": 0, "green": 100})
    assert call(endpoint.scoring_uri, key) == (200, '{"predictions": [0.9]}')
    pid = json.loads((endpoints.root / "weights" / "endpoint.json").read_text())["router_pid"]
    endpoints.delete("weights")
    assert not process_alive(pid) and endpoints.get("weights") is None


def test_bad_names_and_plans_are_one_clear_line(endpoints: LocalEndpoints, tmp_path: Path):
    model = endpoints.ws.get_model("driver", 1)
    spec = DeploymentSpec("build1", model, tmp_path)
    with pytest.raises(AmlopsError, match="endpoint name '../evil' is not valid: use 3-32 letters"):
        rollout(endpoints, "../evil", spec, RolloutPlan(tmp_path / "r.json"))
    with pytest.raises(AmlopsError, match="traffic steps 50,10,100 are not valid"):
        rollout(endpoints, "good-name", spec, RolloutPlan(tmp_path / "r.json", traffic_steps=(50, 10, 100)))
    with pytest.raises(AmlopsError, match="mirror traffic 60% is not valid"):
        rollout(endpoints, "good-name", spec, RolloutPlan(tmp_path / "r.json", mirror_percent=60))
    assert endpoints.list() == []


def test_without_caddy_the_error_names_the_package(endpoints: LocalEndpoints, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AmlopsError, match=r"install it with `apt-get install caddy`$"):
        endpoints.create("no-caddy", "key")
