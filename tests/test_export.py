"""SavedModel export for TF Serving, tested up to the model server's boundary.

Real tiny runs (a 2-class DCGAN, an ACGAN, a lesion CNN) are trained once through the
package's own stages and exported; the SavedModels are then loaded in a fresh Python process,
run with `saved_model_cli`, and answered through REST bodies. Outputs must equal the Keras
models' within an absolute 1e-5 (float32 round-off between batched and per-row calls); the
REST round trip must equal the signature's own output exactly.

The fresh process and the two `saved_model_cli` calls (each mostly a TensorFlow import) are
started by the first test and run while the in-process tests go on; the tests that read
their results come last.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfganaug import config
from tfganaug.errors import InputError, OutputExistsError, RunFolderError
from tfganaug.stages.evaluate import load_classifier
from tfganaug.stages.train_cls import train_classifier
from tfganaug.stages.train_gan import load_gan, train_gan
from tfganaug.stages.export import (INFO_FILE, WARMUP_FILE, export_run, next_version, predict_with_rest_body,
                             rest_request_body)
from tfganaug.runs import RunFolder

ATOL = 1e-5
SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"
DATA = {"name": "phantom", "image_size": 16, "n_phantom_patients": 30}
GAN = {"width": 16, "latent_dim": 8, "epochs": 1, "steps_per_epoch": 2, "batch_size": 8}
CLS = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "filters": [4, 8, 8], "dense_units": 16}
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dcgan = config.preset("cpu_dcgan", data={**DATA, "classes": ["cyst", "metastasis"]}, gan=GAN)
    train_gan(dcgan, root / "dcgan", verbose=0)
    train_gan(config.preset("cpu_acgan", data=DATA, gan=GAN), root / "acgan", verbose=0)
    train_classifier(config.preset("cpu_cnn", data=DATA, cls=CLS), root / "cnn", verbose=0)
    return {name: root / name for name in ("dcgan", "acgan", "cnn")}


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    saved_models = tmp_path_factory.mktemp("saved_models")
    return {name: export_run(run, saved_models / name) for name, run in runs.items()}


@pytest.fixture(scope="module")
def cases(runs):
    """Per export: request inputs (not the export's own example) and the Keras models' answer."""
    rng = np.random.default_rng(7)
    out = {}
    for name in ("dcgan", "acgan"):
        _, _, status, gans = load_gan(runs[name])
        names = status["class_names"]
        label = rng.permutation(np.arange(7) % len(names)).astype(np.int32)
        z = rng.uniform(-1, 1, (7, 8)).astype(np.float32)
        if name == "dcgan":  # one generator per class, called row by row
            raw = np.concatenate([gans[c][1].generate(z[i:i + 1]).numpy() for i, c in enumerate(label)])
        else:
            raw = gans[0][1].generate(z, label).numpy()
        out[name] = ({"z": z, "label": label}, {"image": np.clip((raw + 1) / 2, 0, 1)}, list(names))
    run, _ = RunFolder.load(runs["cnn"])
    image = rng.uniform(0, 1, (5, 16, 16, 1)).astype(np.float32)
    probabilities = load_classifier(run)(image, training=False).numpy()
    out["cnn"] = ({"image": image}, {"probabilities": probabilities, "class_id": probabilities.argmax(-1)},
                  run.status()["class_names"])
    return out


FRESH_PROCESS = """
import json, sys, numpy as np, tensorflow as tf
exports, inputs_path, outputs_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
inputs, out, signatures = np.load(inputs_path), {}, {}
for name, folder in exports.items():
    fn = tf.saved_model.load(folder).signatures["serving_default"]
    spec = lambda s: [s.dtype.name, s.shape.as_list()]
    signatures[name] = {"inputs": {k: spec(s) for k, s in fn.structured_input_signature[1].items()},
                        "outputs": {k: spec(s) for k, s in fn.structured_outputs.items()}}
    args = {k.split("/")[1]: tf.constant(inputs[k]) for k in inputs.files if k.startswith(name + "/")}
    out.update({f"{name}/{k}": v.numpy() for k, v in fn(**args).items()})
np.savez(outputs_path, **out)
print(json.dumps({"signatures": signatures, "tfganaug_imported": "tfganaug" in sys.modules}))
"""


@pytest.fixture(scope="module")
def started(exports, cases, tmp_path_factory):
    """Start the programs that use the exports, concurrently, while in-process tests go on: a fresh
    Python process loading all three SavedModels, `saved_model_cli show --all` (ACGAN) and
    `saved_model_cli run` (DCGAN)."""
    folder = tmp_path_factory.mktemp("served")
    np.savez(folder / "inputs.npz", **{f"{name}/{key}": value for name, (inputs, _, _) in cases.items()
                                        for key, value in inputs.items()})
    for key, value in cases["dcgan"][0].items():
        np.save(folder / f"{key}.npy", value)
    cli = str(SAVED_MODEL_CLI)
    commands = [
        [sys.executable, "-c", FRESH_PROCESS, json.dumps({k: str(v) for k, v in exports.items()}),
         str(folder / "inputs.npz"), str(folder / "outputs.npz")],
        [cli, "show", "--dir", str(exports["acgan"]), "--all"],
        [cli, "run", "--dir", str(exports["dcgan"]), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"z={folder / 'z.npy'};label={folder / 'label.npy'}", "--outdir", str(folder / "cli_out")]]
    procs = []
    for i, command in enumerate(commands):  # files, not pipes: nobody reads until the end
        with open(folder / f"{i}.out", "w") as stdout, open(folder / f"{i}.err", "w") as stderr:
            procs.append(subprocess.Popen(command, stdout=stdout, stderr=stderr, env=QUIET))
    yield folder, commands, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(started):
    folder, commands, procs = started
    for i, (command, proc) in enumerate(zip(commands, procs)):
        assert proc.wait(timeout=120) == 0, f"{command[:2]} failed:\n{(folder / f'{i}.err').read_text()[-3000:]}"
    fresh, show = (folder / "0.out").read_text(), (folder / "1.out").read_text()
    return {"fresh": json.loads(fresh.strip().splitlines()[-1]), "outputs": np.load(folder / "outputs.npz"),
            "show": show, "cli_out": folder / "cli_out"}


def test_layout_and_description(exports, cases, started):
    for name, folder in exports.items():
        assert folder.name == "1" and (folder / "saved_model.pb").is_file()
        assert not [p for p in folder.parent.iterdir() if p.name != "1"], "leftover temporary folder"
        info = json.loads((folder / "assets.extra" / INFO_FILE).read_text())
        assert info["model_name"] == name and info["version"] == 1 and info["signature_name"] == "serving_default"
        assert info["class_names"] == cases[name][2]
        assert info["verified_max_abs_diff"] <= ATOL
        assert info["example_request"]["signature_name"] == "serving_default"
    gan = json.loads((exports["dcgan"] / "assets.extra" / INFO_FILE).read_text())
    assert gan["kind"] == "gan" and gan["arch"] == "dcgan" and gan["class_names"] == ["cyst", "metastasis"]
    assert gan["inputs"] == {"z": {"dtype": "float32", "shape": [None, 8]},
                             "label": {"dtype": "int32", "shape": [None]}}
    assert gan["outputs"] == {"image": {"dtype": "float32", "shape": [None, 16, 16, 1]}}
    assert gan["value_range"]["image"] == [0.0, 1.0]
    cls = json.loads((exports["cnn"] / "assets.extra" / INFO_FILE).read_text())
    assert cls["kind"] == "cls" and cls["outputs"]["class_id"]["dtype"] == "int64"


def _decode(message: bytes) -> list[tuple[int, bytes]]:
    """(field number, payload) of every length-delimited field: enough for the serving protos."""
    fields, i = [], 0
    while i < len(message):
        key, i = _read_varint(message, i)
        assert key & 7 == 2, f"unexpected wire type {key & 7}"
        length, i = _read_varint(message, i)
        fields.append((key >> 3, message[i:i + length]))
        i += length
    return fields


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def test_warmup_requests_decode_to_the_example(exports):
    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:  # optional cross-check; the hand decoder below always runs
        prediction_log_pb2 = None
    for name, folder in exports.items():
        example = json.loads((folder / "assets.extra" / INFO_FILE).read_text())["example_request"]["inputs"]
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(folder / "assets.extra" / WARMUP_FILE))]
        assert len(records) == 1
        (log_field, predict_log), = _decode(records[0])
        assert log_field == 6  # PredictionLog.predict_log
        (request_field, request), = _decode(predict_log)
        assert request_field == 1  # PredictLog.request
        fields = _decode(request)
        spec = dict(_decode(next(p for f, p in fields if f == 1)))
        assert spec == {1: name.encode(), 3: b"serving_default"}
        inputs = {}
        for field, entry in fields:
            if field == 2:
                entry = dict(_decode(entry))
                inputs[entry[1].decode()] = tf.make_ndarray(tensor_pb2.TensorProto.FromString(entry[2]))
        assert sorted(inputs) == sorted(example)
        for key, value in inputs.items():
            np.testing.assert_array_equal(value, np.asarray(example[key], value.dtype))
        assert inputs.get("label", np.zeros(1, np.int32)).dtype == np.int32
        if prediction_log_pb2 is not None:
            log = prediction_log_pb2.PredictionLog.FromString(records[0])
            assert log.WhichOneof("log_type") == "predict_log"
            parsed = log.predict_log.request
            assert (parsed.model_spec.name, parsed.model_spec.signature_name) == (name, "serving_default")
            for key, value in inputs.items():
                np.testing.assert_array_equal(tf.make_ndarray(parsed.inputs[key]), value)
            assert log.SerializeToString(deterministic=True) == records[0]


def test_rest_body_round_trip(exports, cases):
    for name, folder in exports.items():
        inputs, want, _ = cases[name]
        body = rest_request_body(inputs)
        assert body["signature_name"] == "serving_default" and set(body["inputs"]) == set(inputs)
        text = json.dumps(body)
        direct = tf.saved_model.load(str(folder)).signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()})
        response = predict_with_rest_body(folder, text)
        if len(want) == 1:  # TF Serving drops the name of a single output
            outputs = {"image": response["outputs"]}
        else:
            outputs = response["outputs"]
        assert set(outputs) == set(want)
        for key in want:
            np.testing.assert_array_equal(np.asarray(outputs[key], direct[key].dtype.as_numpy_dtype),
                                          direct[key].numpy())
            np.testing.assert_allclose(np.asarray(outputs[key]), want[key], rtol=0, atol=ATOL)
    # Row form, as `{"instances": [...]}`: one object per example.
    inputs, want, _ = cases["acgan"]
    rows = [{"z": z.tolist(), "label": int(c)} for z, c in zip(inputs["z"], inputs["label"])]
    predictions = predict_with_rest_body(exports["acgan"], {"instances": rows})["predictions"]
    np.testing.assert_allclose(np.asarray(predictions), want["image"], rtol=0, atol=ATOL)
    predictions = predict_with_rest_body(exports["cnn"], {"instances": cases["cnn"][0]["image"].tolist()})
    assert [p["class_id"] for p in predictions["predictions"]] == cases["cnn"][1]["class_id"].tolist()


@pytest.mark.parametrize("name", ["dcgan", "acgan"])
def test_label_out_of_range_is_invalid_argument(exports, cases, name):
    inputs, _, names = cases[name]
    fn = tf.saved_model.load(str(exports[name])).signatures["serving_default"]
    for bad in (len(names), -1):
        label = inputs["label"].copy()
        label[3] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"expected label in \[0, {len(names)}\)"):
            fn(z=tf.constant(inputs["z"]), label=tf.constant(label))
        with pytest.raises(InputError, match=rf"expected label in \[0, {len(names)}\) \(label = \[.*{bad}.*\]\)"):
            predict_with_rest_body(exports[name], rest_request_body({"z": inputs["z"], "label": label}))


def test_rest_body_errors_name_what_was_expected(exports, cases):
    inputs, _, _ = cases["acgan"]
    folder = exports["acgan"]
    body = rest_request_body(inputs)
    with pytest.raises(InputError, match=r"integers \(int32\)"):
        predict_with_rest_body(folder, {"inputs": {**body["inputs"], "label": [0.5] * 7}})
    with pytest.raises(InputError, match=r"shape \[None, 8\]"):
        predict_with_rest_body(folder, {"inputs": {**body["inputs"], "z": [[0.0] * 3] * 7}})
    with pytest.raises(InputError, match=r"exactly \['label', 'z'\]"):
        predict_with_rest_body(folder, {"inputs": {"z": body["inputs"]["z"]}})
    with pytest.raises(InputError, match="same number of rows"):
        predict_with_rest_body(folder, {"inputs": {**body["inputs"], "label": [0]}})
    with pytest.raises(InputError, match="signature_name"):
        predict_with_rest_body(folder, {**body, "signature_name": "nope"})
    with pytest.raises(InputError, match='"inputs" or "instances"'):
        predict_with_rest_body(folder, {"z": 1})


def test_versions_increment_and_existing_versions_are_refused(runs, exports, tmp_path):
    out = tmp_path / "cnn"
    shutil.copytree(exports["cnn"], out / "1")
    first = (out / "1" / "saved_model.pb").read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        export_run(runs["cnn"], out, version=1)
    second = export_run(runs["cnn"], out)
    assert second == out / "2" and (second / "saved_model.pb").is_file()
    assert (out / "1" / "saved_model.pb").read_bytes() == first
    assert export_run(runs["cnn"], out, version=10) == out / "10"
    assert sorted(p.name for p in out.iterdir()) == ["1", "10", "2"]
    assert next_version(out) == 11 and next_version(tmp_path / "none") == 1


def test_failed_export_leaves_no_partial_folder(runs, exports, tmp_path):
    broken = tmp_path / "broken_run"
    shutil.copytree(runs["dcgan"], broken)
    shutil.rmtree(broken / "checkpoints" / "metastasis")  # the second generator fails to load
    with pytest.raises(RunFolderError, match="metastasis"):
        export_run(broken, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    # Overwriting an existing version: the old one stays as it was when the new one fails.
    out = tmp_path / "dcgan"
    shutil.copytree(exports["dcgan"], out / "1")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError, match="metastasis"):
        export_run(broken, out, version=1, overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.iterdir()] == ["1"]


def test_fresh_process_equals_keras(served, cases):
    assert not served["fresh"]["tfganaug_imported"]  # the SavedModel alone, without this package
    outputs = served["outputs"]
    assert sorted(outputs.files) == sorted(f"{name}/{key}" for name, (_, want, _) in cases.items() for key in want)
    for name, (_, want, _) in cases.items():
        for key, value in want.items():
            got = outputs[f"{name}/{key}"]
            assert got.shape == value.shape
            np.testing.assert_allclose(got, value, rtol=0, atol=ATOL, err_msg=f"{name}/{key}")
    assert outputs["dcgan/image"].min() >= 0.0 and outputs["dcgan/image"].max() <= 1.0


def test_signatures_have_named_typed_tensors(served):
    signatures = served["fresh"]["signatures"]
    for name in ("dcgan", "acgan"):
        assert signatures[name] == {"inputs": {"z": ["float32", [None, 8]], "label": ["int32", [None]]},
                                    "outputs": {"image": ["float32", [None, 16, 16, 1]]}}
    assert signatures["cnn"] == {"inputs": {"image": ["float32", [None, 16, 16, 1]]},
                                 "outputs": {"probabilities": ["float32", [None, 3]],
                                             "class_id": ["int64", [None]]}}


def test_saved_model_cli_show_lists_inputs_and_outputs(served):
    block = served["show"].split("signature_def['serving_default']:")[1].split("signature_def[")[0]

    def tensor_info(kind: str, key: str) -> str:
        return block.split(f"{kind}['{key}'] tensor_info:")[1].split("name:")[0]

    assert "DT_INT32" in tensor_info("inputs", "label") and "shape: (-1)" in tensor_info("inputs", "label")
    assert "DT_FLOAT" in tensor_info("inputs", "z") and "shape: (-1, 8)" in tensor_info("inputs", "z")
    assert "DT_FLOAT" in tensor_info("outputs", "image")
    assert "shape: (-1, 16, 16, 1)" in tensor_info("outputs", "image")
    assert "Method name is: tensorflow/serving/predict" in block


def test_saved_model_cli_run_equals_keras(served, cases):
    np.testing.assert_allclose(np.load(served["cli_out"] / "image.npy"), cases["dcgan"][1]["image"],
                               rtol=0, atol=ATOL)
