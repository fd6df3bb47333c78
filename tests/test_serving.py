"""`tfganaug synthesize --server`: the TF Serving clients (tfganaug/serving.py) against local
stand-ins of TF Serving's REST front end (tests/tf_serving_stub.py) and of its gRPC
PredictionService (tests/tf_serving_grpc_stub.py: grpcio with the servicer generated in
tensorflow-serving-api), both loopback only and stopping by themselves, answering from
SavedModels exported by `tfganaug export`.

Tiny real runs (a 2-class DCGAN, a 3-class ACGAN) are trained and exported once. Served
synthesis must give the same set as local synthesis of the run for the same seed, byte for
byte (images and labels arrays, every PNG), in both REST request forms and over gRPC, in
batched requests; the manifests differ only in naming the server instead of the run folder. Every failure (no
server, unknown model, a refused request, a server error, a short answer, a timeout) is one
line and exit code 2, and leaves no output behind."""
import json
import socket
import sys

import numpy as np
import pytest

from cli.main import main
from tf_serving_grpc_stub import served_grpc
from tf_serving_stub import served
from tfganaug import config
from tfganaug.errors import ServingError
from tfganaug.serving import GrpcServingClient, ServingClient, connect
from tfganaug.stages.export import export_run
from tfganaug.stages.synthesize import synthesize
from tfganaug.stages.train_gan import train_gan
from tfganaug.synthetic import load_synthetic, read_manifest

DATA = {"name": "phantom", "image_size": 16, "n_phantom_patients": 30}
GAN = {"width": 16, "latent_dim": 8, "epochs": 1, "steps_per_epoch": 2, "batch_size": 8}
CLASSES = {"dcgan": ["cyst", "metastasis"], "acgan": ["cyst", "metastasis", "hemangioma"]}
N = 300  # two requests at the default 256 rows
SOURCE_KEYS = {"generator_run", "arch", "checkpoints", "generator_server", "model", "model_version", "signature",
               "request_body", "batch_size", "created", "images_sha256"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train_gan(config.preset("cpu_dcgan", data={**DATA, "classes": CLASSES["dcgan"]}, gan=GAN), root / "dcgan",
              verbose=0)
    train_gan(config.preset("cpu_acgan", data={**DATA, "classes": CLASSES["acgan"]}, gan=GAN), root / "acgan",
              verbose=0)
    return {name: root / name for name in CLASSES}


@pytest.fixture(scope="module")
def models(runs, tmp_path_factory):
    saved_models = tmp_path_factory.mktemp("saved_models")
    for name, run in runs.items():
        export_run(run, saved_models / name)
    return {name: saved_models / name for name in runs}


def served_synthesis(url, model, out, *extra, classes=None):
    classes = classes or CLASSES.get(model, ["a", "b"])
    return main(["synthesize", "--server", url, "--model", model, "--classes", ",".join(classes),
                 "--n", str(N), "--seed", "3", "--out", str(out), *extra])


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.png")}


@pytest.mark.parametrize("model,body", [("dcgan", "inputs"), ("acgan", "instances"), ("dcgan", "grpc"),
                                        ("acgan", "grpc")])
def test_served_synthesis_equals_local_byte_for_byte(runs, models, tmp_path, model, body):
    local = synthesize(runs[model], N, tmp_path / "local", seed=3)
    with (served_grpc if body == "grpc" else served)(models) as (url, log):
        with pytest.raises(SystemExit) as exit_info:
            served_synthesis(url, model, tmp_path / "served", *(["--body", body] if body != "grpc" else []))
    assert exit_info.value.code == 0
    if body == "grpc":
        requests = [request for method, _, request in log if method == "Predict"]
        assert [r.inputs["label"].tensor_shape.dim[0].size for r in requests] == [256, N - 256]
        assert all(r.model_spec.name == model and r.model_spec.signature_name == "serving_default"
                   and r.inputs["z"].dtype == 1 for r in requests)  # DT_FLOAT TensorProto
    else:
        requests = [json.loads(b) for method, _, b in log if method == "POST"]
        assert [len(r[body]) if body == "instances" else len(r["inputs"]["label"]) for r in requests] == \
            [256, N - 256]
        assert all(path == f"/v1/models/{model}:predict" for method, path, _ in log if method == "POST")
    a, b = np.load(local / "images.npz"), np.load(tmp_path / "served" / "images.npz")
    assert sorted(a.files) == sorted(b.files) == ["class_names", "images", "labels"]
    for key in a.files:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    assert sorted(set(a["labels"].tolist())) == list(range(len(CLASSES[model])))
    png_local, png_served = files(local), files(tmp_path / "served")
    assert len(png_local) == N and png_local == png_served
    manifest_local, manifest_served = read_manifest(local), read_manifest(tmp_path / "served")
    assert {k: v for k, v in manifest_local.items() if k not in SOURCE_KEYS} == \
        {k: v for k, v in manifest_served.items() if k not in SOURCE_KEYS}
    assert manifest_served["generator_server"] == f"{url}/{'' if body == 'grpc' else 'v1/'}models/{model}"
    assert manifest_served["request_body"] == ("gRPC TensorProto" if body == "grpc" else body)
    assert manifest_served["seed"] == 3
    images, labels = load_synthetic(tmp_path / "served", CLASSES[model], 16)  # what train-cls reads
    assert images.shape == (N, 16, 16, 1) and np.array_equal(labels, a["labels"])


def test_client_reads_metadata_and_versions(models, tmp_path):
    with served(models) as (url, log):
        client = ServingClient(url, "acgan", version=1, batch_size=5, body="instances")
        meta = client.metadata()
        assert meta["inputs"]["z"] == (np.float32, [None, 8]) and meta["inputs"]["label"] == (np.int32, [None])
        assert meta["outputs"] == {"image": (np.float32, [None, 16, 16, 1])}
        z = np.random.default_rng(0).uniform(-1, 1, (12, 8)).astype(np.float32)
        rows = client.predict({"z": z, "label": np.arange(12, dtype=np.int32) % 3})["image"]
        columns = ServingClient(url, "acgan", batch_size=12).predict({"z": z, "label": np.arange(12) % 3})["image"]
        assert rows.dtype == np.float32 and rows.shape == (12, 16, 16, 1) and rows.tobytes() == columns.tobytes()
        with pytest.raises(ServingError, match=r"HTTP 404 .*Servable not found for request: Specific\(acgan, 7\)"):
            ServingClient(url, "acgan", version=7).metadata()
    gets = [path for method, path, _ in log if method == "GET"]
    assert gets == ["/v1/models/acgan/versions/1/metadata", "/v1/models/acgan/metadata",
                    "/v1/models/acgan/versions/7/metadata"]  # metadata asked once per client
    assert sum(method == "POST" for method, _, _ in log) == 3 + 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["unreachable", "unknown model", "label out of range", "server error",
                                  "short answer", "timeout"])
def test_failures_are_one_line_and_exit_2(models, tmp_path, capsys, case):
    fault = {"server error": "500", "short answer": "shape", "timeout": "slow"}.get(case)
    model = "nope" if case == "unknown model" else "dcgan"
    extra = {"short answer": ["--body", "instances"], "timeout": ["--timeout", "0.5"]}.get(case, [])
    classes = ["cyst", "metastasis", "other"] if case == "label out of range" else None
    with served(models, fault=fault, slow_s=3.0) as (url, _):
        if case == "unreachable":
            url = f"http://127.0.0.1:{closed_port()}"
        with pytest.raises(SystemExit) as exit_info:
            served_synthesis(url, model, tmp_path / "out", *extra, classes=classes)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: http://127.0.0.1:"), err
    assert {"unreachable": "could not reach the model server",
            "unknown model": "HTTP 404 Not Found: Servable not found for request: Latest(nope)",
            "label out of range": "HTTP 400 Bad Request:",
            "server error": "HTTP 500 Internal Server Error: Internal: the stub fails on purpose",
            "short answer": f"expected output 'image' of shape [256, 16, 16, 1], got [255, 16, 16, 1]",
            "timeout": "could not reach the model server (timed out"}[case] in err, err
    if case == "label out of range":
        assert "expected label in [0, 2)" in err
    assert not (tmp_path / "out").exists()


def test_usage_errors(tmp_path, capsys):
    for args in ([], ["runs/x", "--server", "http://127.0.0.1:1"], ["--server", "http://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["synthesize", *args, "--out", str(tmp_path / "o")])
        assert exit_info.value.code == 2
    assert "either RUN_DIR or --server" in capsys.readouterr().err
    with pytest.raises(ServingError, match="expected a server URL"):
        ServingClient("localhost:8501", "acgan")
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", "--server", "http://127.0.0.1:1", "--model", "m", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "--classes" in capsys.readouterr().err


def test_grpc_client_reads_metadata_and_versions(models):
    """GetModelMetadata's packed SignatureDefMap gives the same signature as the REST metadata."""
    with served_grpc(models) as (url, log), served(models) as (rest_url, _):
        client = connect(url, "acgan", version=1, batch_size=5)
        assert isinstance(client, GrpcServingClient) and client.base == f"{url}/models/acgan/versions/1"
        assert client.signatures() == ServingClient(rest_url, "acgan").signatures()
        assert client.metadata()["inputs"]["label"] == (np.int32, [None])
        z = np.random.default_rng(0).uniform(-1, 1, (12, 8)).astype(np.float32)
        labels = np.arange(12, dtype=np.int32) % 3
        rows = client.predict({"z": z, "label": labels})["image"]
        rest = ServingClient(rest_url, "acgan", batch_size=12).predict({"z": z, "label": labels})["image"]
        assert rows.dtype == np.float32 and rows.shape == (12, 16, 16, 1) and rows.tobytes() == rest.tobytes()
        with pytest.raises(ServingError, match=r"NOT_FOUND: Servable not found for request: Specific\(acgan, 7\)"):
            connect(url, "acgan", version=7).metadata()
    assert [m for m, _, _ in log] == ["GetModelMetadata"] + ["Predict"] * 3 + ["GetModelMetadata"]


@pytest.mark.parametrize("case", ["unreachable", "unknown model", "label out of range", "no serving extra"])
def test_grpc_failures_are_one_line_and_exit_2(models, tmp_path, capsys, monkeypatch, case):
    classes = ["cyst", "metastasis", "other"] if case == "label out of range" else None
    if case == "no serving extra":  # as if tensorflow-serving-api were not installed
        monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
        monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with served_grpc(models) as (url, _):
        if case == "unreachable":
            url = f"grpc://127.0.0.1:{closed_port()}"
        with pytest.raises(SystemExit) as exit_info:
            served_synthesis(url, "nope" if case == "unknown model" else "dcgan", tmp_path / "out", "--timeout", "5",
                             classes=classes)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: grpc://127.0.0.1:"), err
    assert {"unreachable": "could not reach the model server (UNAVAILABLE",
            "unknown model": "GetModelMetadata failed with NOT_FOUND: Servable not found for request: Latest(nope)",
            "label out of range": "Predict failed with INVALID_ARGUMENT: expected label in [0, 2)",
            "no serving extra": "pip install tfganaug[serving]"}[case] in err, err
    assert not (tmp_path / "out").exists()
