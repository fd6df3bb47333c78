"""A stand-in for TF Serving's gRPC front end, for tests (the model server itself cannot be
installed here): grpcio's server with the `PredictionService` servicer generated in
tensorflow-serving-api (the `serving` extra), answering from exported SavedModels.

* `Predict`: the request's `TensorProto` inputs (`tf.make_ndarray`) go through the SavedModel
  signature named in `model_spec.signature_name` (default `serving_default`), and the outputs
  come back as `TensorProto` (`tf.make_tensor_proto`), only those in `output_filter` when it is
  set; a request the graph refuses is INVALID_ARGUMENT with the assertion's message, as TF
  Serving answers it;
* `GetModelMetadata` (`metadata_field: "signature_def"`): the `signature_def` map of the
  SavedModel's own `saved_model.pb`, packed as a `SignatureDefMap`, as TF Serving sends it;
* an unknown model or version: NOT_FOUND ``Servable not found for request: ...``.

`served_grpc(models)` runs it on 127.0.0.1 (a free port, loopback only) with a small thread
pool, and stops it on leaving the block, or by itself after `lifetime_s` at the latest.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tf_serving_stub import _folder
from tfganaug.stages.export import SIGNATURE, _graph_error, _mtime_ns, _signatures


def signature_def_map(folder: Path) -> get_model_metadata_pb2.SignatureDefMap:
    """The signature defs as written in the SavedModel (what TF Serving reads and sends)."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    defs = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in saved.meta_graphs[0].signature_def.items():
        defs.signature_def[name].CopyFrom(sig)
    return defs


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models: dict, log: list):
        self.models, self.log = models, log

    def _folder(self, spec, context) -> Path:
        version = str(spec.version.value) if spec.HasField("version") else None
        folder = _folder(self.models, spec.name, version)
        if folder is None:
            wanted = f"Specific({spec.name}, {version})" if version else f"Latest({spec.name})"
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
        return folder

    def GetModelMetadata(self, request, context):  # noqa: N802 (the generated servicer's names)
        self.log.append(("GetModelMetadata", request.model_spec.name, None))
        folder = self._folder(request.model_spec, context)
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Metadata field signature_def must be requested")
        answer = get_model_metadata_pb2.GetModelMetadataResponse()
        answer.model_spec.name = request.model_spec.name
        answer.model_spec.version.value = int(folder.name)
        answer.metadata["signature_def"].Pack(signature_def_map(folder))
        return answer

    def Predict(self, request, context):  # noqa: N802
        self.log.append(("Predict", request.model_spec.name, request))
        folder = self._folder(request.model_spec, context)
        name = request.model_spec.signature_name or SIGNATURE
        signatures = _signatures(folder.resolve(), _mtime_ns(folder / "saved_model.pb"))
        if name not in signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Serving signature key \"{name}\" not found.")
        fn = signatures[name]
        specs = fn.structured_input_signature[1]
        if set(request.inputs) != set(specs):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"expected the inputs {sorted(specs)}, got {sorted(request.inputs)}")
        tensors = {}
        for key, spec in specs.items():
            array = tf.make_ndarray(request.inputs[key])
            if array.dtype != spec.dtype.as_numpy_dtype or not spec.shape.is_compatible_with(array.shape):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"input '{key}': expected {spec.dtype.name}{spec.shape.as_list()}, got "
                              f"{array.dtype}{list(array.shape)}")
            tensors[key] = tf.constant(array)
        try:
            result = fn(**tensors)
        except tf.errors.InvalidArgumentError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _graph_error(exc.message, specs))
        answer = predict_pb2.PredictResponse()
        answer.model_spec.name = request.model_spec.name
        answer.model_spec.signature_name = name
        answer.model_spec.version.value = int(folder.name)
        wanted = set(request.output_filter) or set(result)
        for key, value in result.items():
            if key in wanted:
                answer.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return answer


@contextlib.contextmanager
def served_grpc(models: dict, lifetime_s: float = 300.0):
    """Serve `{model name: model folder with version subfolders}` over gRPC; yields
    (grpc://127.0.0.1:PORT, request log)."""
    log: list = []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[
        ("grpc.max_receive_message_length", 2**30), ("grpc.max_send_message_length", 2**30)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(models, log), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    deadline = threading.Timer(lifetime_s, server.stop, args=(0,))  # stops by itself if a test hangs
    deadline.daemon = True
    deadline.start()
    try:
        yield f"grpc://127.0.0.1:{port}", log
    finally:
        deadline.cancel()
        server.stop(grace=None).wait(10)
