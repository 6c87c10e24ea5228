"""A stand-in for the Azure ML inference server (fast tests): the same routes and environment contract.

GET / answers 200 only when AZUREML_MODEL_DIR holds the model (model.txt, at any depth, as score.py searches
it: Azure ML nests a registered folder) and AML_APP_ROOT the entry script (the init container unpacked the
package right); POST /score answers one probability per row. A request that still
carries an Authorization header gets 500: the gateway must not pass the key on.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, document):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization"):
            return self._answer(500, {"error": "the key reached the inference server"})
        ready = any(Path(os.environ["AZUREML_MODEL_DIR"]).rglob("model.txt")) and \
            (Path(os.environ["AML_APP_ROOT"]) / os.environ["AZUREML_ENTRY_SCRIPT"]).is_file()
        self._answer(200 if ready else 503, "Healthy" if ready else "model or entry script missing")

    def do_POST(self):
        if self.headers.get("Authorization"):
            return self._answer(500, {"error": "the key reached the inference server"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self._answer(200, {"predictions": [0.25 for _ in body.get("data", [])]})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
