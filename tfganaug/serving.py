"""A TensorFlow Serving REST client, on the standard library alone (urllib, json).

`ServingClient(server, model)` talks to a model server as TF Serving documents its REST API
(https://www.tensorflow.org/tfx/serving/api_rest):

* `metadata()`: ``GET /v1/models/<model>[/versions/<v>]/metadata``, the signature defs;
* `predict(inputs)`: ``POST /v1/models/<model>[/versions/<v>]:predict`` in batches of
  `batch_size` rows, in the columnar form (``{"signature_name", "inputs": {name: lists}}``,
  answered with ``"outputs"``) or the row form (``"instances": [{name: value}, ...]``,
  answered with ``"predictions"``), and the answers put back together as NumPy arrays of the
  signature's dtypes.

Float32 values travel losslessly: each becomes a Python float whose JSON text round-trips,
and the answer is cast back to the signature's dtype. Every failure is one `ServingError`
line naming the URL: an unreachable server or a timeout, an HTTP error (with the server's
``{"error": ...}`` text), or an answer of the wrong form, count or shape. Used by
`tfganaug synthesize --server` (stages/synthesize.py); gRPC (the `serving` extra) is not
implemented here.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np

from tfganaug.errors import ServingError

SIGNATURE = "serving_default"
BODIES = ("inputs", "instances")
DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_INT64": np.int64,
          "DT_UINT8": np.uint8, "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_BOOL": np.bool_}
MAX_RESPONSE_BYTES = 2 * 2**30


class ServingClient:
    """One served model (and optionally one version) on a TF Serving REST endpoint."""

    def __init__(self, server: str, model: str, *, version: int | None = None, signature: str = SIGNATURE,
                 body: str = "inputs", batch_size: int = 256, timeout_s: float = 60.0):
        if not str(server).startswith(("http://", "https://")):
            raise ServingError(f"{server}: expected a server URL such as http://localhost:8501")
        if body not in BODIES:
            raise ServingError(f"expected the request body form 'inputs' or 'instances', got {body!r}")
        if batch_size < 1:
            raise ServingError(f"expected a positive batch size, got {batch_size}")
        self.model, self.version, self.signature = model, version, signature
        self.body, self.batch_size, self.timeout_s = body, int(batch_size), float(timeout_s)
        versioned = f"/versions/{int(version)}" if version is not None else ""
        self.base = f"{str(server).rstrip('/')}/v1/models/{model}{versioned}"
        self._metadata = None

    # ------------------------------------------------------------------ the two endpoints
    def metadata(self) -> dict:
        """{"inputs"|"outputs": {name: (numpy dtype, shape with None for -1)}} of the signature
        (asked once per client)."""
        if self._metadata is None:
            self._metadata = self._fetch_metadata()
        return self._metadata

    def _fetch_metadata(self) -> dict:
        url = f"{self.base}/metadata"
        answer = self._request(url)
        try:
            defs = answer["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise ServingError(f"{url}: expected TF Serving model metadata (metadata.signature_def), "
                               f"got keys {sorted(answer)}") from None
        if self.signature not in defs:
            raise ServingError(f"{url}: expected a signature '{self.signature}', the model has {sorted(defs)}")
        return {side: {name: _tensor_info(spec, url, name) for name, spec in defs[self.signature][side].items()}
                for side in ("inputs", "outputs")}

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature on `inputs` (arrays with one row per example) in batches; the
        outputs by name, one row per example."""
        inputs = {name: np.asarray(value) for name, value in inputs.items()}
        rows = {len(value) for value in inputs.values()}
        if len(rows) != 1:
            raise ServingError(f"expected inputs with the same number of rows, got "
                               f"{ {name: len(v) for name, v in inputs.items()} }")
        n = rows.pop()
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, self.batch_size):
            batch = {name: value[start:start + self.batch_size] for name, value in inputs.items()}
            parts.append(self._predict_batch(batch, len(next(iter(batch.values())))))
        names = parts[0].keys() if parts else ()
        return {name: np.concatenate([p[name] for p in parts]) for name in names}

    # ------------------------------------------------------------------ plumbing
    def _predict_batch(self, batch: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        url = f"{self.base}:predict"
        if self.body == "inputs":
            body = {"signature_name": self.signature,
                    "inputs": {name: value.tolist() for name, value in batch.items()}}
        else:
            columns = {name: value.tolist() for name, value in batch.items()}
            body = {"signature_name": self.signature,
                    "instances": [{name: column[i] for name, column in columns.items()} for i in range(n)]}
        answer = self._request(url, json.dumps(body).encode())
        key = "outputs" if self.body == "inputs" else "predictions"
        if key not in answer:
            raise ServingError(f"{url}: expected a JSON object with '{key}', got keys {sorted(answer)}")
        got = answer[key]
        if self.body == "inputs":
            outputs = got if isinstance(got, dict) else {None: got}
        elif not isinstance(got, list):
            raise ServingError(f"{url}: expected '{key}' as a list with one entry per example, got a JSON "
                               f"{type(got).__name__}")
        elif got and all(isinstance(row, dict) for row in got):
            names = set(got[0])
            if any(set(row) != names for row in got):
                raise ServingError(f"{url}: expected '{key}' rows with the same outputs")
            outputs = {name: [row[name] for row in got] for name in names}
        else:
            outputs = {None: got}
        specs = self.metadata()["outputs"]
        if None in outputs:  # TF Serving leaves the name out when the signature has one output
            if len(specs) != 1:
                raise ServingError(f"{url}: expected the outputs {sorted(specs)} by name, got one unnamed")
            outputs = {next(iter(specs)): outputs[None]}
        if set(outputs) != set(specs):
            raise ServingError(f"{url}: expected the outputs {sorted(specs)}, got {sorted(outputs)}")
        return {name: _array(url, name, value, *specs[name], n) for name, value in outputs.items()}

    def _request(self, url: str, data: bytes | None = None) -> dict:
        request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ServingError(f"{url}: HTTP {exc.code} {exc.reason}: {_error_text(exc)}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServingError(f"{url}: could not reach the model server ({reason or type(exc).__name__}; "
                               f"timeout {self.timeout_s:g} s)") from None
        if len(text) > MAX_RESPONSE_BYTES:
            raise ServingError(f"{url}: expected an answer of at most {MAX_RESPONSE_BYTES} bytes; "
                               "lower the batch size")
        try:
            answer = json.loads(text)
        except ValueError:
            raise ServingError(f"{url}: expected a JSON answer, got {text[:80]!r}") from None
        if not isinstance(answer, dict):
            raise ServingError(f"{url}: expected a JSON object, got a JSON {type(answer).__name__}")
        return answer


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The server's `{"error": ...}` message, else the start of its body."""
    try:
        body = exc.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return "no body"
    try:
        message = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        message = body
    return " ".join(str(message).split())[:300] or "no body"


def _tensor_info(spec, url: str, name: str) -> tuple:
    """(numpy dtype, shape with None for unknown sizes) of a TensorInfo in TF Serving's JSON."""
    try:
        dtype = DTYPES[spec["dtype"]]
        shape = None if spec["tensor_shape"].get("unknown_rank") else [
            None if int(d["size"]) < 0 else int(d["size"]) for d in spec["tensor_shape"].get("dim", [])]
    except (KeyError, TypeError, ValueError):
        raise ServingError(f"{url}: expected tensor '{name}' with a dtype of {sorted(DTYPES)} and a shape, "
                           f"got {json.dumps(spec)[:200]}") from None
    return dtype, shape


def _array(url: str, name: str, value, dtype, shape, n: int) -> np.ndarray:
    """One output of a batch of `n` rows as an array of the signature's dtype and shape."""
    try:
        array = np.asarray(value)
    except ValueError:
        array = None
    if array is None or array.dtype == object or array.dtype.kind not in "biuf":
        raise ServingError(f"{url}: expected output '{name}' as a rectangular array of numbers, got other lists")
    fits = shape is None or (array.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, array.shape)))
    if not fits or len(array) != n:
        want = "?" if shape is None else [n] + ["any" if s is None else s for s in shape[1:]]
        raise ServingError(f"{url}: expected output '{name}' of shape {want}, got {list(array.shape)}")
    return array.astype(dtype)
