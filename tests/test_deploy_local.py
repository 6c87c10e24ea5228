"""The local deployment target with the real Azure ML inference server."""
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from amlops import api
from amlops.deploy.local import target as local
from amlops.errors import AmlopsError
from amlops.workspace.local.workspace import LocalWorkspace
from support import REPO

pytestmark = pytest.mark.slow
SCORING = REPO / "training" / "scoring"
REQUEST = json.loads((SCORING / "sample-request.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> LocalWorkspace:
    ws = LocalWorkspace(tmp_path_factory.mktemp("deploy") / "ws")
    api.publish(ws, REPO / "training" / "pipeline.yml")
    run = api.submit(ws, "safe-driver-training")
    assert run.status == "Completed", run.error
    assert api.register_if_better(ws, run, model_name="driver").registered
    yield ws
    for deployment in ws.list_deployments():
        local.delete_local(ws, deployment.name)


def score(uri: str) -> list[float]:
    request = urllib.request.Request(uri, data=json.dumps(REQUEST).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["predictions"]


def post(uri: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(uri, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_deploy_score_redeploy_kill_and_delete(trained: LocalWorkspace):
    first = api.deploy(trained, model_name="driver", model_version=1, deployment_name="qa",
                       scoring_folder=SCORING)
    assert first.status == "Healthy" and first.scoring_uri.startswith("http://127.0.0.1:")
    model_dir = first.log_path.parent / "azureml-models" / "driver" / "1"
    assert (model_dir / "MLmodel").is_file(), "files must be laid out as Azure ML lays them"
    predictions = score(first.scoring_uri)
    assert len(predictions) == len(REQUEST["data"]) and all(0 <= p <= 1 for p in predictions)

    trained.register_model("driver", trained.get_model("driver", 1).path, {"auc": "0.99"}, {}, None,
                           model_type="mlflow_model")  # the same MLflow model folder, served as mlflow_model
    second = api.deploy(trained, model_name="driver", model_version=None, deployment_name="qa",
                        scoring_folder=SCORING)
    assert second.model_version == 2 and score(second.scoring_uri) == predictions
    assert second.scoring_uri == first.scoring_uri, "a redeploy keeps the deployment's port when it is free"
    assert trained.get_deployment("qa").model_version == 2
    assert not local.process_alive(first.pid), "the old version's server must be stopped"

    os.killpg(second.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while local.process_alive(second.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert local.refresh(trained, trained.get_deployment("qa")).status == "Dead"

    local.delete_local(trained, "qa")
    assert trained.list_deployments() == []


def test_a_failing_init_reports_the_server_log_and_leaves_nothing(trained: LocalWorkspace, tmp_path: Path):
    broken = tmp_path / "scoring"
    broken.mkdir()
    (broken / "score.py").write_text("def init():\n    raise RuntimeError('no model here')\n\n"
                                     "def run(raw):\n    return []\n")
    (broken / "requirements.txt").write_text((SCORING / "requirements.txt").read_text())
    with pytest.raises(AmlopsError) as raised:
        local.deploy_local(trained, trained.get_model("driver", 1), "broken", broken)
    first_line = str(raised.value).splitlines()[0]  # the cause, however long the workers' tracebacks are
    assert "exited with code" in first_line and "RuntimeError: no model here" in first_line
    assert trained.list_deployments() == []
    assert not (trained.root / "deployments" / "broken").exists() or \
        list((trained.root / "deployments" / "broken").iterdir()) == []


def test_a_missing_entry_script_is_a_clear_error(trained: LocalWorkspace, tmp_path: Path):
    with pytest.raises(AmlopsError, match="entry script .*score.py not found"):
        api.deploy(trained, model_name="driver", model_version=1, deployment_name="x", scoring_folder=tmp_path)


def test_smoke_test_passes_against_the_real_server(trained: LocalWorkspace):
    deployment = api.deploy(trained, model_name="driver", model_version=1, deployment_name="smoke",
                            scoring_folder=SCORING)
    try:
        report = api.smoke_test(deployment.scoring_uri, request_file=SCORING / "sample-request.json", count=5)
        assert report.passed, report.text()
        status, body = post(deployment.scoring_uri, b'{"rows": []}')
        assert status == 400 and "must be a JSON object" in body["error"]
        status, body = post(deployment.scoring_uri, b'{"data": [[1, 2]]}')
        assert status == 400 and "has 2 values" in body["error"]
    finally:
        local.delete_local(trained, "smoke")
    assert not local.process_alive(deployment.pid)


def test_a_foreign_server_on_the_port_is_not_taken_for_ours_and_the_old_version_keeps_serving(
        trained: LocalWorkspace, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Foreign(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"I am not your server")

        def log_message(self, *args):
            pass

    old = api.deploy(trained, model_name="driver", model_version=1, deployment_name="race", scoring_folder=SCORING,
                     workers=1)
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    try:
        # the port picked for the new version is taken by someone else before our server binds it
        monkeypatch.setattr(local, "_free_port", lambda: foreign.server_address[1])
        with pytest.raises(AmlopsError, match="exited with code|did not answer"):
            local.deploy_local(trained, trained.get_model("driver", 1), "race", SCORING, liveness_timeout_s=30,
                               workers=2)
        current = local.refresh(trained, trained.get_deployment("race"))
        assert current.pid == old.pid and current.status == "Healthy", "the old version must keep serving"
        assert len(score(old.scoring_uri)) == len(REQUEST["data"])
        fake = old.__class__(**{**old.__dict__, "scoring_uri": f"http://127.0.0.1:{foreign.server_address[1]}/score"})
        assert local.current_status(fake) == "Dead", "a server we did not start is never ours"
    finally:
        foreign.shutdown()
        local.delete_local(trained, "race")


def test_parallel_deploys_under_one_name_leave_one_live_server(trained: LocalWorkspace):
    import threading

    results, errors = [], []

    def deploy() -> None:
        try:
            ws = LocalWorkspace(trained.root)
            results.append(local.deploy_local(ws, ws.get_model("driver", 1), "twin", SCORING,
                                              on_info=lambda text: None))
        except Exception as error:  # noqa: B902
            errors.append(error)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    try:
        assert errors == [] and len(results) == 2
        final = local.refresh(trained, trained.get_deployment("twin"))
        assert final.status == "Healthy" and {r.scoring_uri for r in results} == {final.scoring_uri}
        assert len(score(final.scoring_uri)) == len(REQUEST["data"])
        assert {r.pid for r in results if local.process_alive(r.pid)} == {final.pid}
    finally:
        local.delete_local(trained, "twin")


def _workers(pid: int) -> int:
    import psutil

    return len(psutil.Process(pid).children())


def _omp_threads(pid: int) -> str:
    import psutil

    return psutil.Process(pid).environ().get("OMP_NUM_THREADS", "unset")


def test_workers_a_no_op_redeploy_and_a_code_change_on_the_same_port(trained: LocalWorkspace,
                                                                     tmp_path: Path, monkeypatch):
    import shutil

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = local.default_workers()
    said: list[str] = []
    first = local.deploy_local(trained, trained.get_model("driver", 1), "keep", SCORING, workers=2,
                               on_info=said.append)
    try:
        assert _workers(first.pid) == 2
        # OpenMP's threads split the cores between the workers (idle OpenMP threads spin: more would halve
        # the throughput of two workers)
        assert _omp_threads(first.pid) == str(max(1, cores // 2))
        again = local.deploy_local(trained, trained.get_model("driver", 1), "keep", SCORING, workers=2,
                                   on_info=said.append)
        assert again.pid == first.pid and "the running server is kept" in said[-1]
        changed = tmp_path / "scoring"
        shutil.copytree(SCORING, changed)
        with open(changed / "score.py", "a") as handle:
            handle.write("\n# a change of the scoring code\n")
        third = local.deploy_local(trained, trained.get_model("driver", 1), "keep", changed, workers=1,
                                   on_info=said.append)
        assert third.pid != first.pid and third.scoring_uri == first.scoring_uri
        assert not local.process_alive(first.pid) and _workers(third.pid) == 1
        assert _omp_threads(third.pid) == str(cores)
        assert len(score(third.scoring_uri)) == len(REQUEST["data"])
        (third.log_path.parent / local.SERVED_FILE).unlink()  # as a server started by an older amlops
        fourth = local.deploy_local(trained, trained.get_model("driver", 1), "keep", changed, workers=1,
                                    on_info=said.append)
        assert fourth.pid != third.pid and fourth.scoring_uri == first.scoring_uri
        assert not local.process_alive(third.pid) and len(score(fourth.scoring_uri)) == len(REQUEST["data"])
    finally:
        local.delete_local(trained, "keep")


def test_the_server_log_is_rotated_and_has_no_access_log(trained: LocalWorkspace, monkeypatch):
    monkeypatch.setattr(local, "LOG_MAX_BYTES", 4096)
    deployment = api.deploy(trained, model_name="driver", model_version=1, deployment_name="logs",
                            scoring_folder=SCORING, workers=1)
    try:
        for _ in range(60):
            score(deployment.scoring_uri)
        log = deployment.log_path
        assert log.with_name("server.log.1").is_file(), "the log must have been rotated"
        assert log.stat().st_size < 4096 + 2048 and log.with_name("server.log.1").stat().st_size < 4096 + 2048
        assert not log.with_name("server.log.2").exists()
        assert "POST /score HTTP/1.1" not in log.read_text(), "gunicorn's access log is off"
    finally:
        local.delete_local(trained, "logs")
