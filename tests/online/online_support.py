"""Scoring folders for rollout tests (each answers with its own version, so a client sees which deployment
served it; `broken` answers 500 from run()) and a client loop that counts failed requests."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

SCORE = '''import json
import os


def init():
    global model
    model = [p for p in os.listdir(os.environ["AZUREML_MODEL_DIR"])]


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    {body}
'''
BODIES = {"ok": "return {{'predictions': [{value} for _ in rows]}}",
          "broken": "raise RuntimeError('this version of the scoring script is broken')"}


def scoring_folder(root: Path, name: str, value: float = 0.1, broken: bool = False) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    body = BODIES["broken"] if broken else BODIES["ok"].format(value=value)
    (folder / "score.py").write_text(SCORE.replace("{body}", body))
    (folder / "requirements.txt").write_text("")
    return folder


def workspace_with_model(root: Path):
    """A local workspace with model `driver` version 1 registered."""
    from amlops.workspace.local.workspace import LocalWorkspace

    ws = LocalWorkspace(root / "ws")
    model = root / "model"
    model.mkdir(parents=True)
    (model / "model.txt").write_text("a model\n")
    ws.register_model("driver", model, {}, {}, None)
    return ws


def request_file(root: Path) -> Path:
    path = root / "request.json"
    path.write_text(json.dumps({"data": [[1, 2, 3], [4, 5, 6]]}))
    return path


class ClientLoop:
    """Sends scoring requests one after the other until stopped; counts answers by prediction and errors."""

    def __init__(self, uri: str, key: str | None):
        self.uri, self.key = uri, key
        self.answers: Counter = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ClientLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.errors)

    def _loop(self) -> None:
        body = json.dumps({"data": [[1, 2, 3]]}).encode()
        while not self._stop.is_set():
            request = urllib.request.Request(self.uri, data=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.answers[json.loads(response.read())["predictions"][0]] += 1
            except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
                self.errors.append(str(error))
            time.sleep(0.005)
