"""A stand-in for TF Serving's REST front end, for tests: the model server itself cannot be
installed here. It answers TF Serving's REST API from exported SavedModels:

* ``POST /v1/models/<name>[/versions/<v>]:predict``: the body is answered by
  `tfganaug.stages.export.predict_with_rest_body` (``inputs`` -> ``outputs``, ``instances`` ->
  ``predictions``); a request the graph or the parser refuses gets HTTP 400 ``{"error": ...}``;
* ``GET /v1/models/<name>[/versions/<v>]/metadata``: the signature defs in TF Serving's JSON
  (``metadata.signature_def.signature_def.<sig>.inputs.<name>.{dtype, tensor_shape, name}``);
* an unknown model or version: HTTP 404 ``{"error": "Servable not found ..."}``.

`served(models)` runs it on 127.0.0.1 (a free port, loopback only) in a daemon thread and
stops it on leaving the block, or by itself after `lifetime_s` at the latest. `fault` makes it
misbehave on purpose for the client's error tests: "500" (HTTP 500 with an error body),
"shape" (predictions with one row too few), "slow" (answers after `slow_s`)."""
from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import tensorflow as tf

from tfganaug.errors import InputError
from tfganaug.stages.export import predict_with_rest_body

ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>:predict|/metadata)$")


def _folder(models: dict, name: str, version: str | None) -> Path | None:
    """The version folder TF Serving would serve: the one asked for, else the highest."""
    root = models.get(name)
    if root is None:
        return None
    versions = sorted((int(p.name) for p in Path(root).iterdir() if p.is_dir() and p.name.isdigit()))
    if not versions or (version is not None and int(version) not in versions):
        return None
    return Path(root) / str(int(version) if version is not None else versions[-1])


def metadata(folder: Path, name: str) -> dict:
    """GetModelMetadata as TF Serving's REST API renders it."""
    def info(spec, tensor):
        return {"dtype": "DT_" + spec.dtype.name.upper().replace("FLOAT32", "FLOAT").replace("FLOAT64", "DOUBLE"),
                "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                         for d in spec.shape.as_list()], "unknown_rank": False},
                "name": tensor}

    defs = {}
    for sig, fn in tf.saved_model.load(str(folder)).signatures.items():
        defs[sig] = {"inputs": {k: info(s, f"{sig}_{k}:0") for k, s in fn.structured_input_signature[1].items()},
                     "outputs": {k: info(s, f"StatefulPartitionedCall:{i}")
                                 for i, (k, s) in enumerate(sorted(fn.structured_outputs.items()))},
                     "method_name": "tensorflow/serving/predict", "defaults": {}}
    return {"model_spec": {"name": name, "signature_name": "", "version": folder.name},
            "metadata": {"signature_def": {"signature_def": defs}}}


def _handler(models: dict, fault: str | None, slow_s: float, log: list):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout tests)
                pass

        def _route(self, method: str):
            match = ROUTE.match(self.path)
            if match is None or (method == "POST") != (match["rest"] == ":predict"):
                self._answer(404, {"error": f"Malformed request: {method} {self.path}"})
                return None
            folder = _folder(models, match["name"], match["version"])
            if folder is None:
                wanted = f"Specific({match['name']}, {match['version']})" if match["version"] else \
                    f"Latest({match['name']})"
                self._answer(404, {"error": f"Servable not found for request: {wanted}"})
                return None
            return match["name"], folder

        def do_GET(self):  # noqa: N802 (http.server's names)
            log.append(("GET", self.path, None))
            routed = self._route("GET")
            if routed:
                self._answer(200, metadata(routed[1], routed[0]))

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            log.append(("POST", self.path, body))
            routed = self._route("POST")
            if not routed:
                return
            if fault == "500":
                self._answer(500, {"error": "Internal: the stub fails on purpose"})
                return
            if fault == "slow":
                time.sleep(slow_s)
            try:
                answer = predict_with_rest_body(routed[1], body)
            except InputError as exc:
                self._answer(400, {"error": str(exc)})
                return
            if fault == "shape" and "predictions" in answer:
                answer["predictions"] = answer["predictions"][:-1]
            self._answer(200, answer)

        def log_message(self, *args):  # quiet: the test reads `log` instead
            pass

    return Handler


@contextlib.contextmanager
def served(models: dict, fault: str | None = None, slow_s: float = 2.0, lifetime_s: float = 300.0):
    """Serve `{model name: model folder with version subfolders}`; yields (base URL, request log)."""
    log: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(models, fault, slow_s, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    deadline = threading.Timer(lifetime_s, server.shutdown)  # stops by itself if a test hangs
    deadline.daemon = True
    thread.start()
    deadline.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
