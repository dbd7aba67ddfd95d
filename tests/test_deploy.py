"""LiteRT and ONNX exports: export_report.json, evaluate/predict on the files, benchmark --mode serve, bad input.

Parity of every model's files with its SavedModel (in a process without TensorFlow) is in
test_every_model.py; here the session's trained MLP and a small CNN carry the rest.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import benchmark, evaluate, predict, train
from keras_cnn.cli import export as export_cli
from keras_cnn.deploy import convert, formats, runtime

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tf2onnx", "onnxruntime")),
    reason="the deploy extra is not installed (pip install -e '.[deploy]')",
)
ALL = "tflite,tflite-fp16,tflite-int8,onnx"
FILES = {
    "tflite": "model.tflite",
    "tflite-fp16": "model_fp16.tflite",
    "tflite-int8": "model_int8.tflite",
    "onnx": "model.onnx",
}


@pytest.fixture(scope="module")
def deployed(trained_mlp, tmp_path_factory):
    """The trained MLP exported in every format: the version folder."""
    base = tmp_path_factory.mktemp("exports")
    assert export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(base), "--format", ALL]) == 0
    return base / os.path.basename(trained_mlp.run_dir) / "1"


def test_every_format_lands_in_one_version_with_a_report(deployed, trained_mlp, capsys):
    names = set(os.listdir(deployed))
    assert set(FILES.values()) | {"saved_model.pb", "config.json", "export_report.json"} <= names
    assert not any(n.startswith(".") for n in names)  # the conversion model is gone
    report = json.load(open(deployed / "export_report.json"))
    rows = report["formats"]
    assert set(rows) == {"savedmodel", *FILES}
    assert report["validation_images"] == 60  # the fixture's validation split
    for name, row in rows.items():
        for key in ("size_bytes", "validation_accuracy", "top1_agreement", "latency_ms_batch1", "images_per_s_batch64"):
            assert row[key] > 0, (name, key)
    assert rows["savedmodel"]["max_abs_probability_difference"] == 0.0
    assert rows["tflite"]["max_abs_probability_difference"] < 1e-4
    assert rows["onnx"]["max_abs_probability_difference"] < 1e-4
    assert rows["tflite-int8"]["size_bytes"] < rows["tflite-fp16"]["size_bytes"] < rows["tflite"]["size_bytes"]
    # The SavedModel's accuracy is the run's own validation accuracy (same images, same weights: EMA).
    assert rows["savedmodel"]["validation_accuracy"] == pytest.approx(trained_mlp.history[-1]["val_accuracy"], abs=1e-6)
    # int8: within 2 points of float on 60 images (one image is 1.7 points), raw pixels in.
    assert abs(rows["tflite-int8"]["validation_accuracy"] - rows["tflite"]["validation_accuracy"]) <= 0.034
    quant = rows["tflite-int8"]
    assert quant["input_quantization"]["dtype"] == "uint8" and quant["output_quantization"]["dtype"] == "uint8"
    assert quant["calibration_images"] == 300 and quant["calibration_seed"] is not None


def test_evaluate_takes_each_file_and_matches_the_report(deployed, capsys):
    report = json.load(open(deployed / "export_report.json"))["formats"]
    for name, filename in FILES.items():
        assert evaluate.main(["--model", str(deployed / filename)]) == 0, capsys.readouterr().err
        out = deployed / f"eval-validation-{filename.replace('.', '_')}"
        assert json.load(open(out / "evaluation.json"))["accuracy"] == pytest.approx(
            report[name]["validation_accuracy"]
        )


def test_predict_takes_a_file_and_answers_like_the_saved_model(deployed, tmp_path, capsys, mnist_npz):
    from PIL import Image

    images = np.load(mnist_npz)["x_train"][:4]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image.squeeze()).save(paths[-1])
    outputs = {}
    for model in (str(deployed), str(deployed / "model.tflite"), str(deployed / "model.onnx")):
        assert predict.main(["--model", model, *paths, "--output", str(tmp_path / "p.json")]) == 0
        rows = json.load(open(tmp_path / "p.json"))
        outputs[model] = (
            [[t["probability"] for t in r["top"]] for r in rows],
            [[t["class"] for t in r["top"]] for r in rows],
        )
    (ref_p, ref_c), *others = outputs.values()
    for probabilities, classes in others:
        assert classes == ref_c
        np.testing.assert_allclose(probabilities, ref_p, atol=1e-4)


def test_benchmark_serve_prints_the_table(deployed, capsys):
    assert benchmark.main(["--mode", "serve", "--model", str(deployed)]) == 0
    out = capsys.readouterr().out
    for name in ("savedmodel", *FILES):
        assert f"| {name} |" in out
    assert "batch-1 latency" in out


def test_an_ensemble_exports_to_every_format_averaging_inside(mnist_small, mnist_npz, tmp_path, capsys):
    runs = []
    for seed in (1, 2):
        argv = ["--model", "mlp", "--hidden", "32", "--dataset", "mnist", "--data-dir", str(mnist_small)]
        argv += ["--output-dir", str(tmp_path), "--name", f"m{seed}", "--epochs", "1", "--seed", str(seed)]
        argv += ["--quiet", "--set", "run.export=false", "--set", "run.precision=float32"]
        assert train.main(argv) == 0, capsys.readouterr().err
        runs.append(str(tmp_path / f"m{seed}"))
    argv = ["--ensemble", *runs, "--name", "both", "--export-dir", str(tmp_path / "x"), "--format", "tflite,onnx"]
    assert export_cli.main(argv) == 0, capsys.readouterr().err
    version = tmp_path / "x" / "both" / "1"
    images = np.load(mnist_npz)["x_train"][:16]
    images = images[..., None] if images.ndim == 3 else images
    reference = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant(images))
    for filename in ("model.tflite", "model.onnx"):
        np.testing.assert_allclose(
            runtime.load(str(version / filename)).predict(images), reference["probabilities"].numpy(), atol=1e-4
        )


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing changed


def test_an_unknown_format_is_refused_before_any_work(trained_mlp, tmp_path, capsys):
    assert (
        export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(tmp_path), "--format", "tflite,coreml"]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown --format coreml" in err and "onnx" in err
    assert os.listdir(tmp_path) == []


def test_a_missing_converter_names_the_extra(trained_mlp, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a)
    )
    assert export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tf2onnx" in err and ".[deploy]" in err
    assert os.listdir(tmp_path) == []


def test_a_run_without_a_finished_model_is_refused(trained_mlp, writable_copy, tmp_path, capsys):
    run = writable_copy(trained_mlp.run_dir)
    os.remove(run / "model.keras")
    assert export_cli.main(["--run", str(run), "--export-dir", str(tmp_path / "x"), "--format", "tflite"]) == 2
    assert "no model.keras" in capsys.readouterr().err


def test_a_failed_conversion_leaves_earlier_versions_and_no_staging(
    deployed, trained_mlp, tmp_path, capsys, monkeypatch
):
    base = tmp_path / "exports"
    assert export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(base), "--format", "tflite"]) == 0
    name = os.path.basename(trained_mlp.run_dir)
    before = sorted(os.listdir(base / name))

    def fail(*args, **kwargs):
        raise ValueError("the converter does not support this op")

    monkeypatch.setattr(convert.tf.lite.TFLiteConverter, "from_saved_model", fail)
    assert export_cli.main(["--run", trained_mlp.run_dir, "--export-dir", str(base), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot convert to tflite" in err
    assert sorted(os.listdir(base / name)) == before == ["1"]
    assert os.path.isfile(base / name / "1" / "model.tflite")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("filename", ["model.tflite", "model.onnx"])
def test_a_damaged_file_is_one_line_in_evaluate_predict_and_benchmark(
    deployed, writable_copy, damage, filename, capsys, cifar_folder
):
    copy = writable_copy(deployed)
    data = open(copy / filename, "rb").read()
    open(copy / filename, "wb").write(
        {"truncated": data[: len(data) // 3], "garbage": b"not a model" * 50, "empty": b""}[damage]
    )
    image = str(next(cifar_folder.rglob("*.jpg")))
    for command, argv in (
        (evaluate.main, ["--model", str(copy / filename)]),
        (predict.main, ["--model", str(copy / filename), image]),
        (benchmark.main, ["--mode", "serve", "--model", str(copy)]),
    ):
        assert command(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "damaged" in err and filename in err, err
    assert sorted(os.listdir(copy)) == sorted(os.listdir(deployed))  # nothing written beside it


def test_a_file_of_another_kind_is_refused(deployed, tmp_path, capsys):
    assert evaluate.main(["--model", str(deployed / "config.json")]) == 2
    assert "neither a .tflite nor an .onnx" in capsys.readouterr().err


def test_ctrl_c_during_the_conversions_leaves_no_version(trained_mlp, tmp_path, capsys, monkeypatch):
    import signal

    real = convert.convert

    def convert_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while a converter runs, as a user's Ctrl-C would
        return real(*args, **kwargs)

    monkeypatch.setattr(convert, "convert", convert_then_signal)
    argv = ["--run", trained_mlp.run_dir, "--export-dir", str(tmp_path), "--format", "tflite,onnx"]
    assert export_cli.main(argv) == 130
    assert "no version was written" in capsys.readouterr().err
    name = os.path.basename(trained_mlp.run_dir)
    assert os.listdir(tmp_path / name) == []  # neither a version nor a staging folder
