"""The smoke test: call a scoring endpoint that speaks the Azure ML scoring contract and check it.

It waits for the service first, retrying connection errors and 502/503/504 with backoff up to a
deadline (a container that is still starting is not a failure), then checks one answer in detail and
measures latency over N requests.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from amlops import bounded_http
from amlops.bounded_http import NetworkError
from amlops.errors import AmlopsError
from amlops.secret_masking import Masker

RETRYABLE_STATUS = {502, 503, 504}
PREDICTION_KEYS = ("predictions", "result", "probabilities", "scores")
RESPONSE_EXCERPT = 300
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    latency_ms: float


@dataclass(frozen=True)
class SmokeReport:
    passed: bool
    message: str
    latency_ms: dict = field(default_factory=dict)
    requests: int = 0
    checks: tuple = ()

    def text(self) -> str:
        lines = [f"{'PASS' if ok else 'FAIL'}  {name}: {detail}" for name, ok, detail in self.checks]
        if self.latency_ms:
            lines.append("latency over {} requests: p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms"
                         .format(self.requests, **self.latency_ms))
        lines.append(self.message)
        return "\n".join(lines)


class SmokeTest:
    def __init__(self, scoring_uri: str, request_file: Path, key: str | None = None,
                 expected: list[float] | None = None, tolerance: float = 0.01, count: int = 20,
                 latency_budget_ms: float | None = None, readiness_timeout_s: float = 300,
                 request_timeout_s: float = 30, headers: dict[str, str] | None = None):
        bounded_http.check_url(scoring_uri, "scoring URI")
        _check_seconds("--timeout (readiness)", readiness_timeout_s)
        _check_seconds("request timeout", request_timeout_s)
        self.scoring_uri = scoring_uri
        self.headers = dict(headers or {})  # e.g. azureml-model-deployment, to test one deployment alone
        self.payload, self.rows = _load_request(request_file)
        self.key = _clean_key(key)
        self.masker = Masker([key or "", self.key or ""])
        self.expected = expected
        self.tolerance = tolerance
        self.count = max(1, count)
        self.latency_budget_ms = latency_budget_ms
        self.readiness_timeout_s = readiness_timeout_s
        self.request_timeout_s = request_timeout_s
        self.checks: list[tuple[str, bool, str]] = []

    def run(self) -> SmokeReport:
        """The report, with the key masked in every encoding a server may have echoed it."""
        report = self._run()
        mask = self.masker.mask
        return replace(report, message=mask(report.message),
                       checks=tuple((name, ok, mask(detail)) for name, ok, detail in report.checks))

    def _run(self) -> SmokeReport:
        first = self._wait_until_ready()
        if first is None:
            return self._report(f"the service at {self.scoring_uri} did not answer within "
                                f"{self.readiness_timeout_s:g} s; check that it started and its logs")
        failure = self._check_answer(first)
        if failure:
            return self._report(failure)
        latencies = [first.latency_ms]
        for _ in range(self.count - 1):
            answer = self._call()
            if answer.status != 200:
                return self._report(f"request {len(latencies) + 1} got HTTP {answer.status}: "
                                    f"{_excerpt(answer.body)}")
            latencies.append(answer.latency_ms)
        return self._latency_report(latencies)

    def _wait_until_ready(self) -> Answer | None:
        deadline = time.monotonic() + self.readiness_timeout_s
        delay = 0.25
        last = "no answer"
        while True:
            try:
                answer = self._call(min(self.request_timeout_s, max(0.1, deadline - time.monotonic())))
                if answer.status not in RETRYABLE_STATUS:
                    self.checks.append(("service answers", True, f"HTTP {answer.status} after {last}"
                                        if last != "no answer" else f"HTTP {answer.status}"))
                    return answer
                last = f"HTTP {answer.status}"
            except NetworkError as error:
                last = str(error)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.checks.append(("service answers", False, f"still {last} at the deadline"))
                return None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)

    def _call(self, timeout_s: float | None = None) -> Answer:
        """One POST within its deadline; the body is bounded and a redirect is an answer, never followed
        (the key would travel with it)."""
        headers = {"Content-Type": "application/json", **self.headers}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        started = time.perf_counter()
        response = bounded_http.request("POST", self.scoring_uri, self.payload, headers,
                                        timeout_s=timeout_s or self.request_timeout_s, max_body=MAX_RESPONSE_BYTES)
        body = response.text()
        if 300 <= response.status < 400:
            body = (f"redirect to {response.headers.get('location', '(no Location)')}, not followed: "
                    "give the final scoring URI")
        return Answer(response.status, body, (time.perf_counter() - started) * 1000)

    def _check_answer(self, answer: Answer) -> str | None:
        for name, check in (("HTTP status", _status_ok), ("one probability per row", self._shape_ok),
                            ("expected values", self._values_ok)):
            problem = check(answer)
            self.checks.append((name, problem is None, problem or "ok"))
            if problem:
                return f"smoke test failed: {name}: {problem}"
        return None

    def _shape_ok(self, answer: Answer) -> str | None:
        predictions = _predictions(answer.body)
        if isinstance(predictions, str):
            return predictions
        if len(predictions) != self.rows:
            return f"{len(predictions)} predictions for {self.rows} input rows; response {_excerpt(answer.body)}"
        bad = [p for p in predictions if not _probability(p)]
        if bad:
            return f"values outside [0, 1] or not numbers: {bad[:5]}; response {_excerpt(answer.body)}"
        return None

    def _values_ok(self, answer: Answer) -> str | None:
        if self.expected is None:
            return None
        predictions = _predictions(answer.body)
        if len(self.expected) != len(predictions):
            return f"{len(self.expected)} expected values for {len(predictions)} predictions"
        off = [(i, p, e) for i, (p, e) in enumerate(zip(predictions, self.expected))
               if abs(p - e) > self.tolerance]
        if off:
            return "; ".join(f"row {i}: got {p:.4f}, expected {e:.4f} +/- {self.tolerance:g}" for i, p, e in off)
        return None

    def _latency_report(self, latencies: list[float]) -> SmokeReport:
        summary = {name: percentile(latencies, q) for name, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        if self.latency_budget_ms is not None:
            within = summary["p95"] <= self.latency_budget_ms
            self.checks.append(("latency budget", within,
                                f"p95 {summary['p95']:.1f} ms vs budget {self.latency_budget_ms:g} ms"))
            if not within:
                return self._report(f"smoke test failed: p95 latency {summary['p95']:.1f} ms is over the budget "
                                    f"of {self.latency_budget_ms:g} ms", summary, len(latencies))
        return SmokeReport(True, f"smoke test passed: {len(latencies)} requests to {self.scoring_uri}",
                           summary, len(latencies), tuple(self.checks))

    def _report(self, message: str, latency: dict | None = None, requests: int = 0) -> SmokeReport:
        return SmokeReport(False, message, latency or {}, requests, tuple(self.checks))


def parse_expected(text: str | None, source: str = "--expected") -> list[float] | None:
    """Expected predictions given as a JSON list of numbers (None when empty)."""
    if not text:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise AmlopsError(f"{source} must be a JSON list of numbers such as [0.1, 0.9], got '{text}'")
    return [float(v) for v in values]


def _load_request(path: Path) -> tuple[bytes, int]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise AmlopsError(f"request file {path} not found; give a JSON file like "
                          "training/scoring/sample-request.json") from None
    except ValueError as error:
        raise AmlopsError(f"request file {path} is not valid JSON ({error}); fix the file") from None
    rows = document.get("data") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not rows:
        raise AmlopsError(f"request file {path} must be a JSON object with a non-empty 'data' list of rows")
    return json.dumps(document).encode(), len(rows)


def _status_ok(answer: Answer) -> str | None:
    return None if answer.status == 200 else f"expected 200, got {answer.status}: {_excerpt(answer.body)}"


def _predictions(body: str) -> list | str:
    """The list of predictions in a response, or a sentence saying why there is none."""
    try:
        document = json.loads(body)
    except ValueError:
        return f"the response is not JSON: {_excerpt(body)}"
    if isinstance(document, str):  # a run() that returns json.dumps(...) is encoded twice by the server
        try:
            document = json.loads(document)
        except ValueError:
            return f"the response is a string, not predictions: {_excerpt(body)}"
    if isinstance(document, dict):
        document = next((document[k] for k in PREDICTION_KEYS if k in document), document)
    if not isinstance(document, list):
        return f"no list of predictions in the response (looked for a list or {', '.join(PREDICTION_KEYS)}): " \
               f"{_excerpt(body)}"
    return document


def _probability(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1 \
        and not math.isnan(value)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _clean_key(key: str | None) -> str | None:
    """The key without the surrounding whitespace a file or a variable often adds (a trailing newline);
    a control character inside it is refused without showing the key."""
    if key is None:
        return None
    key = key.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise AmlopsError("the scoring key contains a control character (a line break?); give the key alone, "
                          "on one line")
    return key or None


def _check_seconds(what: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise AmlopsError(f"{what} must be a positive number of seconds, got {value!r}")


def _excerpt(body: str) -> str:
    body = " ".join(body.split())
    return body if len(body) <= RESPONSE_EXCERPT else body[:RESPONSE_EXCERPT] + "..."
