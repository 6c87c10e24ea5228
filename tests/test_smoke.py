"""The smoke-test client against loopback services: late starters, wrong shapes, dead ends."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from amlops.errors import AmlopsError
from amlops.smoke import SmokeTest, percentile

REQUEST = {"data": [{"ps_ind_01": 1}, {"ps_ind_01": 2}, {"ps_ind_01": 3}]}


class Scripted(BaseHTTPRequestHandler):
    """Answers POST /score with the next scripted (status, body), repeating the last one."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append((json.loads(self.rfile.read(length)), self.headers.get("Authorization")))
        script = self.server.script
        status, body = script.pop(0) if len(script) > 1 else script[0]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    return path


def serve(script, port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Scripted)
    server.script, server.received = list(script), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def uri(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/score"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


GOOD = (200, json.dumps({"predictions": [0.1, 0.2, 0.9]}))


def test_passes_and_reports_latency_percentiles(request_file: Path):
    server = serve([GOOD])
    report = SmokeTest(uri(server), request_file, key="s3cret-key", count=10).run()
    assert report.passed, report.text()
    assert report.requests == 10 and set(report.latency_ms) == {"p50", "p95", "p99"}
    assert server.received[0] == (REQUEST, "Bearer s3cret-key")
    assert "s3cret-key" not in report.text()


def test_retries_503_then_passes(request_file: Path):
    server = serve([(503, "{}"), (502, "{}"), GOOD])
    report = SmokeTest(uri(server), request_file, count=2, readiness_timeout_s=20).run()
    assert report.passed, report.text()
    assert "HTTP 200 after HTTP 502" in report.text()


def test_waits_for_a_service_that_starts_late(request_file: Path):
    port = free_port()
    late = threading.Timer(1.0, lambda: holder.append(serve([GOOD], port)))
    holder: list = []
    late.start()
    try:
        report = SmokeTest(f"http://127.0.0.1:{port}/score", request_file, count=2, readiness_timeout_s=20).run()
    finally:
        late.join()
    assert report.passed, report.text()
    assert "connection error" in report.text()


def test_fails_at_the_deadline_when_nothing_answers(request_file: Path):
    report = SmokeTest(f"http://127.0.0.1:{free_port()}/score", request_file, readiness_timeout_s=1).run()
    assert not report.passed
    assert "did not answer within 1 s" in report.message and "connection error" in report.text()


@pytest.mark.parametrize("answer, words", [
    ((200, json.dumps({"predictions": [0.1, 0.2]})), "2 predictions for 3 input rows"),
    ((200, json.dumps({"predictions": [0.1, 1.7, 0.2]})), "outside [0, 1]"),
    ((200, "<html>oops</html>"), "not JSON: <html>oops</html>"),
    ((200, json.dumps({"error": "bad row"})), "no list of predictions"),
    ((500, json.dumps({"message": "An unexpected error occurred in scoring script."})),
     "HTTP status: expected 200, got 500"),
    ((401, "{}"), "HTTP status: expected 200, got 401"),
])
def test_a_wrong_answer_fails_with_the_check_and_the_response(request_file: Path, answer, words):
    report = SmokeTest(uri(serve([answer])), request_file, count=3).run()
    assert not report.passed
    assert words in report.message, report.message


def test_expected_values_within_tolerance(request_file: Path):
    server = serve([GOOD])
    assert SmokeTest(uri(server), request_file, expected=[0.1, 0.21, 0.9], tolerance=0.02, count=1).run().passed
    report = SmokeTest(uri(server), request_file, expected=[0.1, 0.5, 0.9], tolerance=0.02, count=1).run()
    assert not report.passed and "row 1: got 0.2000, expected 0.5000" in report.message


def test_latency_budget(request_file: Path):
    report = SmokeTest(uri(serve([GOOD])), request_file, count=5, latency_budget_ms=0.0001).run()
    assert not report.passed and "over the budget" in report.message


def test_bad_request_files_are_clear_errors(tmp_path: Path):
    with pytest.raises(AmlopsError, match="not found"):
        SmokeTest("http://127.0.0.1:1/score", tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AmlopsError, match="not valid JSON"):
        SmokeTest("http://127.0.0.1:1/score", tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"data": []}')
    with pytest.raises(AmlopsError, match="non-empty 'data' list"):
        SmokeTest("http://127.0.0.1:1/score", tmp_path / "empty.json")


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7.0], 99) == 7.0
