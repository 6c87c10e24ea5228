"""One deployment's container in the fake Azure ML: the scoring contract of the Azure ML inference server
(init() once, GET / for liveness, POST /score -> run(raw body)), for a score.py with no dependencies.

Usage: python fake_scoring_process.py PORT APP_ROOT ENTRY_SCRIPT MODEL_DIR. init() raising exits 1 (the
service reports that as a crashed user container).
"""
import importlib.util
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load(app_root: str, entry_script: str):
    spec = importlib.util.spec_from_file_location("score", os.path.join(app_root, entry_script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


class JsonHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Handler(JsonHandler):
    score = None

    def do_GET(self):
        self._answer(200, b'"Healthy"')

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        try:
            result = Handler.score.run(raw)
        except Exception as error:  # the inference server answers 500 with the exception text
            return self._answer(500, json.dumps({"message": f"An unexpected error occurred in scoring script: "
                                                            f"{error}"}).encode())
        self._answer(200, json.dumps(result).encode())


if __name__ == "__main__":
    port, app_root, entry, model_dir = sys.argv[1:5]
    os.environ["AZUREML_MODEL_DIR"] = model_dir
    sys.path.insert(0, app_root)
    Handler.score = load(app_root, entry)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    print("ready", flush=True)
    server.serve_forever()
