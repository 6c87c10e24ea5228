"""Managed online endpoints through the real azure-ai-ml clients against the fake Azure ML (fake_online_endpoints):
the blue/green rollout's three cases with a client calling the whole time, a quota error rolled back, and each
service rule broken on purpose. Every request body is checked against the 2024-10-01 spec."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from amlops import api
from amlops.deploy.online_endpoint.model import DeploymentSpec
from amlops.deploy.online_endpoint.rollout import RolloutFailed, RolloutPlan, rollout
from amlops.errors import AmlopsError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "online"))
from online_support import ClientLoop, request_file, scoring_folder  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def online(fake, monkeypatch):
    from azure.ai.ml.constants._common import LROConfigurations

    from fake_online_endpoints import OnlineEndpoints

    monkeypatch.setattr(LROConfigurations, "POLL_INTERVAL", 0.01)  # the SDK's 5 s between polls, shortened
    extension = OnlineEndpoints(fake)
    yield extension
    extension.close()
    assert not extension.problems, "\n".join(extension.problems)


@pytest.fixture
def backend(azure_ws, online):
    from amlops.deploy.online_endpoint.azure import AzureEndpoints

    return AzureEndpoints(azure_ws, on_info=lambda line: None)


@pytest.fixture
def model(azure_ws, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.txt").write_text("a model\n")
    return azure_ws.register_model("driver", folder, {}, {}, None)


def plan(tmp_path: Path, **kwargs) -> RolloutPlan:
    return RolloutPlan(request_file(tmp_path), smoke_requests=3, readiness_timeout_s=10, **kwargs)


def spec(tmp_path: Path, model, name: str, value: float = 0.1, broken: bool = False, **kwargs) -> DeploymentSpec:
    return DeploymentSpec(name, model, scoring_folder(tmp_path / "code", name, value, broken), **kwargs)


def test_blue_green_rollout_against_the_service(backend, online, fake, model, tmp_path, azure_ws):
    first = rollout(backend, "driver-ep", spec(tmp_path, model, "build1", 0.1), plan(tmp_path))
    assert first.traffic == {"build1": 100} and first.previous is None and first.key

    with ClientLoop(first.scoring_uri, first.key) as client:
        with pytest.raises(RolloutFailed, match=r"^rollout of build2 to endpoint driver-ep failed: smoke test of "
                                                r"deployment build2 alone failed: HTTP status: expected 200, "
                                                r"got 500.*traffic is "
                                                r"back to build1 100% and deployment build2 was deleted$"):
            rollout(backend, "driver-ep", spec(tmp_path, model, "build2", broken=True), plan(tmp_path))
        assert backend.get("driver-ep").traffic == {"build1": 100}
        assert [d.name for d in backend.get("driver-ep").deployments] == ["build1"]

        third = api.deploy_online_endpoint(  # the API the CLI and the task call
            azure_ws, endpoint_name="driver-ep", deployment_name="build3", model_name="driver", model_version=None,
            scoring_folder=scoring_folder(tmp_path / "code", "build3", 0.3), request_file=request_file(tmp_path),
            traffic_steps=(20, 100), delete_previous=True, smoke_requests=3, readiness_timeout_s=10,
            on_info=lambda line: None)
    assert client.errors == [] and client.answers[0.1] > 0 and client.answers[0.3] > 0, (client.errors, client.answers)
    assert third.previous == "build1" and third.deleted == ("build1",) and third.traffic == {"build3": 100}
    assert [d.name for d in backend.get("driver-ep").deployments] == ["build3"]
    bodies = [r.body for r in fake.calls("PUT", "/onlineEndpoints/driver-ep") if "/deployments/" not in r.path]
    assert {"build1": 80, "build3": 20} in [b["properties"].get("traffic") for b in bodies], "the traffic step"
    assert not fake.problems and fake.calls("PUT", "/deployments/build3")


def test_a_quota_error_is_rolled_back(backend, online, model, tmp_path):
    rollout(backend, "quota-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    online.quota["standardDSv2Family"] = 12  # blue holds ceil(1 x 1.2) x 4 = 8 cores; green needs 8 more
    with pytest.raises(RolloutFailed, match=r"quota exceeded for deployment green of online endpoint quota-ep: Not "
                                            r"enough quota available for Standard_DS3_v2.*Current usage/limit: "
                                            r"8/12\. Additional needed: 8.*traffic is back to blue 100% and "
                                            r"deployment green was deleted$"):
        rollout(backend, "quota-ep", spec(tmp_path, model, "green"), plan(tmp_path))
    endpoint = backend.get("quota-ep")
    assert endpoint.traffic == {"blue": 100} and [d.name for d in endpoint.deployments] == ["blue"]


def test_mirror_traffic_first_then_live(backend, online, model, tmp_path):
    rollout(backend, "mirror-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    result = rollout(backend, "mirror-ep", spec(tmp_path, model, "green", 0.2), plan(tmp_path, mirror_percent=20))
    assert online.mirrored.get("green", 0) > 0, "the endpoint's smoke test ran while green got mirrored requests"
    assert {name: share for name, share in result.traffic.items() if share} == {"green": 100}
    assert backend.get("mirror-ep").mirror_traffic == {}


def _settle(online, backend, name: str) -> None:
    """Let the operations the rollback left running end (the SDK polls them in background threads)."""
    online.hold_operations = False
    for _ in range(500):
        if backend.get(name).status.lower() == "succeeded":
            return
        threading.Event().wait(0.01)


def test_an_interrupted_rollout_requests_the_traffic_and_the_delete_without_waiting(
        backend, online, fake, model, tmp_path):
    """The agent's cancel (SIGINT, then SIGKILL 6.5 s later) lands after the first traffic step: both rollback
    changes are sent while Azure's operations still run (here they never end), and the interrupt goes on."""
    rollout(backend, "cancel-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    lines: list[str] = []

    def on_info(line: str) -> None:
        lines.append(line)
        if line.startswith("traffic: ") and len([x for x in lines if x.startswith("traffic: ")]) == 2:
            online.hold_operations = True  # from now on each operation takes "minutes"
            raise KeyboardInterrupt  # green had 20% and was checked; the cancel comes before the next step

    guard = threading.Timer(20, lambda: setattr(online, "hold_operations", False))  # an awaited rollback ends
    guard.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            rollout(backend, "cancel-ep", spec(tmp_path, model, "green", 0.2), plan(tmp_path, traffic_steps=(20, 100)),
                    on_info=on_info)
        assert online.hold_operations, "the rollback waited for Azure's operations to end"
    finally:
        guard.cancel()
    puts = [r for r in fake.calls("PUT", "/onlineEndpoints/cancel-ep") if "/deployments/" not in r.path]
    assert puts[-2].body["properties"]["traffic"] == {"blue": 80, "green": 20}
    assert puts[-1].body["properties"]["traffic"] == {"blue": 100} and puts[-1].status == 200
    deletes = fake.calls("DELETE", "/onlineEndpoints/cancel-ep/deployments/")
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in deletes] == [("green", 202)]
    assert lines[-3:] == [
        "interrupted: traffic blue 100% requested for endpoint cancel-ep (not waiting for it)",
        "interrupted: the deletion of deployment green requested for endpoint cancel-ep (not waiting for it)",
        "check that endpoint cancel-ep has traffic blue 100% and no deployment green once the requests are applied: "
        "`amlops endpoints show cancel-ep --backend azure`; else run `amlops endpoints traffic cancel-ep blue=100 "
        "--backend azure` and `amlops endpoints delete cancel-ep --deployment green --backend azure`"]
    _settle(online, backend, "cancel-ep")
    endpoint = backend.get("cancel-ep")
    assert endpoint.traffic == {"blue": 100} and [d.name for d in endpoint.deployments] == ["blue"]


def test_an_interrupt_while_azure_applies_a_traffic_step_says_what_is_left_to_do(backend, online, fake, model,
                                                                                 tmp_path, monkeypatch):
    """SIGINT while the first step's operation runs: the service refuses another update of the endpoint until it
    ends, and a deployment with traffic cannot be deleted; the task says so and what to run, without waiting."""
    rollout(backend, "busy-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    lines: list[str] = []
    polled = online._poll

    def poll(path, query):  # the step's operation is being awaited: the agent's cancel arrives now
        answer = polled(path, query)
        if online.hold_operations and not any(line == "SIGINT" for line in lines):
            lines.append("SIGINT")
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return answer

    monkeypatch.setattr(online, "_poll", poll)

    def on_info(line: str) -> None:
        lines.append(line)
        if line.startswith("traffic: "):
            online.hold_operations = True

    with pytest.raises(KeyboardInterrupt):
        rollout(backend, "busy-ep", spec(tmp_path, model, "green", 0.2), plan(tmp_path, traffic_steps=(20, 100)),
                on_info=on_info)
    assert online.hold_operations, "the rollback waited for Azure's operations to end"
    assert lines[-3].startswith("interrupted: could not request traffic blue 100% for endpoint busy-ep: the traffic "
                                "of online endpoint busy-ep conflicts with what exists (Conflict): Endpoint busy-ep "
                                "is being provisioned")
    assert lines[-2].startswith("interrupted: could not request the deletion of deployment green for endpoint busy-ep:")
    assert "Deployment green has 20% traffic" in lines[-2]
    assert lines[-1].endswith("else run `amlops endpoints traffic busy-ep blue=100 --backend azure` and `amlops "
                              "endpoints delete busy-ep --deployment green --backend azure`")
    _settle(online, backend, "busy-ep")


@pytest.mark.parametrize("mode", ["aml_token", "aad_token"])
def test_token_auth(backend, online, model, tmp_path, mode):
    result = rollout(backend, "token-ep", spec(tmp_path, model, "blue"), plan(tmp_path, auth_mode=mode))
    assert result.smoke.passed and backend.get("token-ep").auth_mode == mode


# --- the service's rules, each broken on purpose ------------------------------------------------------------

def test_traffic_must_sum_to_100_and_name_existing_deployments(backend, online, model, tmp_path):
    rollout(backend, "rules-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    with pytest.raises(AmlopsError, match="need to sum to 100"):
        backend.set_traffic("rules-ep", {"blue": 60})
    with pytest.raises(AmlopsError, match="deployment ghost does not exist"):
        backend.set_traffic("rules-ep", {"blue": 50, "ghost": 50})
    with pytest.raises(AmlopsError, match="cannot take live traffic and mirror traffic"):
        backend.set_traffic("rules-ep", {"blue": 100}, {"blue": 10})
    backend.create_deployment("rules-ep", spec(tmp_path, model, "green"))
    with pytest.raises(AmlopsError, match="Invalid mirror traffic: it sums to 60; it can be at most 50"):
        backend.set_traffic("rules-ep", {"blue": 100}, {"green": 60})
    endpoint = backend.get("rules-ep")
    assert {k: v for k, v in endpoint.traffic.items() if v} == {"blue": 100} and endpoint.mirror_traffic == {}


def test_a_deployment_with_traffic_cannot_be_deleted(backend, online, model, tmp_path):
    rollout(backend, "delete-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    with pytest.raises(AmlopsError, match="has 100% traffic; set its traffic to 0 before deleting it"):
        backend.delete_deployment("delete-ep", "blue")
    backend.set_traffic("delete-ep", {})
    backend.delete_deployment("delete-ep", "blue")
    assert backend.get("delete-ep").deployments == ()


def test_endpoint_names_are_unique_in_the_region(backend, online, fake, model, tmp_path):
    online.region["taken-ep"] = "another workspace in westeurope"
    with pytest.raises(AmlopsError, match="already in use in region westeurope"):
        rollout(backend, "taken-ep", spec(tmp_path, model, "blue"), plan(tmp_path))
    assert backend.get("taken-ep") is None


def test_the_service_refuses_bad_names_and_instance_types(azure_ws, online, fake, model, tmp_path):
    from azure.core.rest import HttpRequest

    from amlops.deploy.online_endpoint.azure import AzureEndpoints

    # the SDK checks names itself, so the request is sent by hand, as another client could
    url = f"https://management.azure.com{fake.prefix}/onlineEndpoints/1bad?api-version=2024-10-01"
    bad = HttpRequest("PUT", url, json={"location": "westeurope", "properties": {"authMode": "Key"}})
    answer = azure_ws.ml_client._service_client_02_2022_preview._client.send_request(bad)
    assert answer.status_code == 400 and "must be 3-32 characters" in answer.text()
    backend = AzureEndpoints(azure_ws, on_info=lambda line: None)
    backend.create("sku-ep", "key")
    with pytest.raises(AmlopsError, match="Instance type Standard_Tiny is not supported"):
        backend.create_deployment("sku-ep", spec(tmp_path, model, "blue", instance_type="Standard_Tiny"))


def test_a_crashing_init_fails_the_deployment(backend, online, model, tmp_path):
    backend.create("crash-ep", "key")
    folder = tmp_path / "crash"
    folder.mkdir()
    (folder / "score.py").write_text("def init():\n    raise RuntimeError('no model here')\n\n\n"
                                     "def run(data):\n    pass\n")
    with pytest.raises(AmlopsError, match="ResourceNotReady.*User container has crashed.*no model here"):
        backend.create_deployment("crash-ep", DeploymentSpec("blue", model, folder))
