"""TensorFlow Serving clients: REST on the standard library alone (urllib, json), gRPC through
the optional `serving` extra (tensorflow-serving-api, which brings grpcio).

`connect(server, model)` picks the transport from the URL: ``http(s)://HOST:8501`` gives a
`ServingClient`, ``grpc://HOST:8500`` a `GrpcServingClient`; both answer the same calls.

`ServingClient(server, model)` talks to a model server as TF Serving documents its REST API
(https://www.tensorflow.org/tfx/serving/api_rest):

* `metadata()`: ``GET /v1/models/<model>[/versions/<v>]/metadata``, the signature defs
  (`signatures()`: every signature's, `metadata()`: the client's `signature`);
* `predict(inputs)`: ``POST /v1/models/<model>[/versions/<v>]:predict`` in batches of
  `batch_size` rows, in the columnar form (``{"signature_name", "inputs": {name: lists}}``,
  answered with ``"outputs"``) or the row form (``"instances": [{name: value}, ...]``,
  answered with ``"predictions"``), and the answers put back together as NumPy arrays of the
  signature's dtypes.

Float32 values travel losslessly: each becomes a Python float whose JSON text round-trips,
and the answer is cast back to the signature's dtype. Every failure is one `ServingError`
line naming the URL: an unreachable server or a timeout, an HTTP error (with the server's
``{"error": ...}`` text), or an answer of the wrong form, count or shape.

`GrpcServingClient` calls ``tensorflow.serving.PredictionService``: `GetModelMetadata`
(``metadata_field: "signature_def"``, a packed ``SignatureDefMap``) and `Predict` (inputs as
``TensorProto`` from `tf.make_tensor_proto`, outputs read with `tf.make_ndarray`, so values
travel bit for bit). Failures are one `ServingError` line with the gRPC status code. Without
the extra, a ``grpc://`` URL is one line naming ``pip install tfganaug[serving]``.

Used by `tfganaug synthesize --server` (stages/synthesize.py) and `tfganaug predict --server`
(stages/predict.py).
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np

from tfganaug.errors import ServingError

SIGNATURE = "serving_default"
BODIES = ("inputs", "instances")
DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_INT64": np.int64,
          "DT_UINT8": np.uint8, "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_BOOL": np.bool_}
MAX_RESPONSE_BYTES = 2 * 2**30
SERVING_EXTRA = "pip install tfganaug[serving]"


def connect(server: str, model: str, **options) -> "ServingClient | GrpcServingClient":
    """The client for `server`: REST for http(s)://, gRPC for grpc:// (the `serving` extra)."""
    if str(server).startswith("grpc://"):
        return GrpcServingClient(server, model, **{k: v for k, v in options.items() if k != "body"})
    return ServingClient(server, model, **options)


class _Client:
    """What both transports share: the signature defs asked once, and batched prediction."""

    transport = ""

    def __init__(self, model: str, version: int | None, signature: str, batch_size: int, timeout_s: float):
        if batch_size < 1:
            raise ServingError(f"expected a positive batch size, got {batch_size}")
        self.model, self.version, self.signature = model, version, signature
        self.batch_size, self.timeout_s = int(batch_size), float(timeout_s)
        self._signatures = None

    def signatures(self) -> dict:
        """{signature: {"inputs"|"outputs": {name: (numpy dtype, shape with None for -1)}}} of the
        served model (asked once per client)."""
        if self._signatures is None:
            self._signatures = self._fetch_signatures()
        return self._signatures

    def metadata(self) -> dict:
        """The inputs and outputs of the client's `signature` (as in `signatures`)."""
        defs = self.signatures()
        if self.signature not in defs:
            raise ServingError(f"{self.base}: expected a signature '{self.signature}', the model has {sorted(defs)}")
        return defs[self.signature]

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

    def _checked(self, where: str, outputs: dict, n: int) -> dict[str, np.ndarray]:
        """The answer's outputs as arrays of the signature's names, dtypes and shapes, `n` rows."""
        specs = self.metadata()["outputs"]
        if set(outputs) != set(specs):
            raise ServingError(f"{where}: expected the outputs {sorted(specs)}, got {sorted(outputs)}")
        return {name: _array(where, name, value, *specs[name], n) for name, value in outputs.items()}

    def _fetch_signatures(self) -> dict:
        raise NotImplementedError

    def _predict_batch(self, batch: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        raise NotImplementedError


class ServingClient(_Client):
    """One served model (and optionally one version) on a TF Serving REST endpoint."""

    transport = "REST"

    def __init__(self, server: str, model: str, *, version: int | None = None, signature: str = SIGNATURE,
                 body: str = "inputs", batch_size: int = 256, timeout_s: float = 60.0):
        if not str(server).startswith(("http://", "https://")):
            raise ServingError(f"{server}: expected a server URL such as http://localhost:8501 "
                               "(or grpc://localhost:8500)")
        if body not in BODIES:
            raise ServingError(f"expected the request body form 'inputs' or 'instances', got {body!r}")
        super().__init__(model, version, signature, batch_size, timeout_s)
        self.body = body
        versioned = f"/versions/{int(version)}" if version is not None else ""
        self.base = f"{str(server).rstrip('/')}/v1/models/{model}{versioned}"

    def _fetch_signatures(self) -> dict:
        url = f"{self.base}/metadata"
        answer = self._request(url)
        try:
            defs = answer["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise ServingError(f"{url}: expected TF Serving model metadata (metadata.signature_def), "
                               f"got keys {sorted(answer)}") from None
        return {sig: {side: {name: _tensor_info(spec, url, name) for name, spec in sides[side].items()}
                      for side in ("inputs", "outputs")}
                for sig, sides in defs.items() if not sig.startswith("__")}  # __saved_model_init_op

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
        return self._checked(url, outputs, n)

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


class GrpcServingClient(_Client):
    """One served model on TF Serving's gRPC PredictionService (``grpc://HOST:8500``)."""

    transport = "gRPC"

    def __init__(self, server: str, model: str, *, version: int | None = None, signature: str = SIGNATURE,
                 batch_size: int = 256, timeout_s: float = 60.0):
        parts = urlsplit(str(server))
        if parts.scheme != "grpc" or not parts.hostname or parts.port is None or parts.path.strip("/"):
            raise ServingError(f"{server}: expected a gRPC server URL such as grpc://localhost:8500")
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError:
            raise ServingError(f"{server}: gRPC needs the optional serving extra (tensorflow-serving-api, grpcio), "
                               f"which is not installed: {SERVING_EXTRA}") from None
        super().__init__(model, version, signature, batch_size, timeout_s)
        self._grpc = grpc
        target = f"{parts.hostname}:{parts.port}"
        versioned = f"/versions/{int(version)}" if version is not None else ""
        self.base = f"grpc://{target}/models/{model}{versioned}"
        limit = min(MAX_RESPONSE_BYTES, 2**31 - 1)  # gRPC takes a C int; its default (4 MB) is too small
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", limit),
                                                               ("grpc.max_send_message_length", limit)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _spec(self, request) -> None:
        request.model_spec.name = self.model
        if self.version is not None:
            request.model_spec.version.value = int(self.version)

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s)
        except self._grpc.RpcError as exc:
            code, details = exc.code(), " ".join(str(exc.details() or "").split())[:300]
            if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServingError(f"{self.base}: could not reach the model server ({code.name}: {details}; "
                                   f"timeout {self.timeout_s:g} s)") from None
            raise ServingError(f"{self.base}: {method} failed with {code.name}: {details}") from None

    def _fetch_signatures(self) -> dict:
        from tensorflow_serving.apis import get_model_metadata_pb2
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request)
        answer = self._call("GetModelMetadata", request)
        defs = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in answer.metadata or not answer.metadata["signature_def"].Unpack(defs):
            raise ServingError(f"{self.base}: expected model metadata with a packed SignatureDefMap "
                               f"(signature_def), got fields {sorted(answer.metadata)}")
        return {sig: {"inputs": {k: _proto_info(v, self.base, k) for k, v in d.inputs.items()},
                      "outputs": {k: _proto_info(v, self.base, k) for k, v in d.outputs.items()}}
                for sig, d in defs.signature_def.items() if not sig.startswith("__")}

    def _predict_batch(self, batch: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        request = predict_pb2.PredictRequest()
        self._spec(request)
        request.model_spec.signature_name = self.signature
        specs = self.metadata()["inputs"]
        for name, value in batch.items():
            dtype = specs[name][0] if name in specs else value.dtype  # the server names an unknown input
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value, dtype)))
        answer = self._call("Predict", request)
        return self._checked(self.base, {k: tf.make_ndarray(v) for k, v in answer.outputs.items()}, n)


def _proto_info(info, where: str, name: str) -> tuple:
    """(numpy dtype, shape with None for unknown sizes) of a TensorInfo protobuf."""
    import tensorflow as tf
    try:
        dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
    except TypeError:
        raise ServingError(f"{where}: expected tensor '{name}' with a numeric dtype, got enum {info.dtype}") from None
    shape = None if info.tensor_shape.unknown_rank else [None if d.size < 0 else int(d.size)
                                                         for d in info.tensor_shape.dim]
    return dtype, shape


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
