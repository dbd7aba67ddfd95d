"""--labels FILE.csv (path,label[,split]) as a data source, and --multi-label training, metrics and serving."""

import csv
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import evaluate as evaluate_cli
from keras_cnn.cli import predict as predict_cli
from keras_cnn.cli import train as train_cli
from keras_cnn.data.labels_csv import read_labels_csv
from keras_cnn.errors import UsageError
from keras_cnn.training.multi_label import average_precision, choose_threshold, f1_scores, multi_label_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_csv(path, rows, header=("path", "label", "split")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def folder_rows(folder, csv_dir, per_class=None, val_per_class=0):
    """Rows naming the CIFAR fixture's files relative to csv_dir: the first val_per_class of each class validate."""
    rows = []
    for cls in sorted(os.listdir(folder)):
        files = sorted(os.listdir(folder / cls))[:per_class]
        for i, name in enumerate(files):
            rel = os.path.relpath(folder / cls / name, csv_dir)
            rows.append((rel, cls, "validation" if i < val_per_class else "train"))
    return rows


@pytest.fixture(scope="module")
def pairs(cifar_folder, tmp_path_factory):
    """Pairs of the CIFAR fixture's images side by side, labelled with both classes (docs/experiments): 138
    of the 144 asked for (pairs of one class are skipped), 115 training and 23 validation rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cifar_pairs", ROOT / "docs" / "experiments" / "cifar_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("pairs")
    module.main([str(cifar_folder), str(out), "--pairs", "144"])
    return out / "labels.csv"


@pytest.fixture(scope="module")
def multi_label_run(pairs, tmp_path_factory):
    """A small CNN trained multi-label on the pairs' 115 training images (23 validate)."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["--labels", str(pairs), "--multi-label", "--model", "cnn", "--epochs", "25", "--batch-size", "24"]
    argv += ["--optimizer", "adam", "--lr", "0.003", "--precision", "float32", "--output-dir", str(out), "--quiet"]
    assert train_cli.main(argv) == 0
    (run,) = [p.parent for p in out.glob("*/config.json")]
    return run


# ------------------------------------------------------------------ single-label CSV


def test_a_labels_csv_trains_like_a_folder_with_its_own_split(cifar_folder, tmp_path):
    labels = write_csv(tmp_path / "photos" / "labels.csv", folder_rows(cifar_folder, tmp_path / "photos", 12, 2))
    out = tmp_path / "runs"
    argv = ["--labels", str(labels), "--model", "linear", "--epochs", "1", "--batch-size", "20", "--quiet"]
    assert train_cli.main(argv + ["--output-dir", str(out)]) == 0
    record = json.loads((out / "linear-photos" / "config.json").read_text())
    assert record["data"]["source"] == f"labels_csv:{labels}"
    assert (record["data"]["train_size"], record["data"]["val_size"]) == (100, 20)  # the CSV's split, not a carve
    assert record["data"]["class_names"] == sorted(os.listdir(cifar_folder))


def test_labels_csv_reads_classes_splits_and_multi_hot_rows(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"")
    path = write_csv(tmp_path / "l.csv", [("a.png", "dog;cat", ""), ("b.png", "cat", "train"), ("c.png", "dog", "val")])
    listed, names = read_labels_csv(str(path), multi_label=True)
    assert names == ["cat", "dog"]
    np.testing.assert_array_equal(listed["train"][1], [[1, 1], [1, 0]])
    np.testing.assert_array_equal(listed["validation"][1], [[0, 1]])
    assert listed["validation"][0] == [str(tmp_path / "c.png")]


BAD_CSVS = [
    ("missing", [("nothere.jpg", "cat", "train")], None, "listed image(s) do not exist, e.g."),
    ("columns", [("{a}", "cat", "x")], ("path", "label", "weight"), "unknown column(s) weight"),
    ("no label column", [("{a}", "")], ("path", "class"), "unknown column(s) class"),
    ("empty label", [("{a}", "cat", "train"), ("{b}", " ", "train")], None, "line 3: the label is empty"),
    ("duplicate", [("{a}", "cat", "train"), ("./{a}", "dog", "train")], None, "is listed twice (first on line 2)"),
    (
        "absent class",
        [("{a}", "cat", "train"), ("{b}", "dog", "train"), ("{c}", "frog", "validation")],
        None,
        "class 'frog' (validation) has no training rows",
    ),
    ("bad split", [("{a}", "cat", "holdout")], None, "split 'holdout' is not one of train, validation"),
    ("header only", [], None, "has a header but no rows"),
    ("several without flag", [("{a}", "cat;dog", "train")], None, "holds several classes; pass --multi-label"),
]


@pytest.mark.parametrize("case, rows, header, needle", BAD_CSVS, ids=[c[0] for c in BAD_CSVS])
def test_a_bad_labels_csv_ends_in_one_line_and_changes_nothing(
    case, rows, header, needle, cifar_folder, trained_cifar, tmp_path, capsys
):
    images = sorted((cifar_folder / "cat").iterdir())[:3]
    names = {k: os.path.relpath(p, tmp_path) for k, p in zip("abc", images)}
    path = write_csv(
        tmp_path / "labels.csv",
        [tuple(v.format(**names) for v in r) for r in rows],
        header or ("path", "label", "split"),
    )
    out = pathlib.Path(trained_cifar.run_dir).parent  # a folder holding an earlier run: it must stay as it was
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    argv = ["--labels", str(path), "--model", "linear", "--epochs", "1", "--output-dir", str(out)]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--labels", "nothere.csv"], "--labels nothere.csv does not exist"),
        (["--labels", "x.txt"], "--labels takes a .csv file"),
        (["--labels", "{csv}", "--data-dir", "{folder}"], "name two datasets; pass one"),
        (["--data-dir", "{folder}", "--multi-label"], "--multi-label reads its classes from a labels CSV"),
    ],
)
def test_labels_flags_that_cannot_apply_are_refused(extra, needle, cifar_folder, tmp_path, capsys):
    labels = write_csv(tmp_path / "l.csv", folder_rows(cifar_folder, tmp_path, 3))
    argv = [a.format(csv=labels, folder=cifar_folder) for a in extra]
    assert train_cli.main(argv + ["--model", "linear", "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------- multi-label


def test_average_precision_and_f1_match_hand_computed_values():
    # Ranked: pos, neg, pos, neg -> precision at the positives 1/1 and 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.2, 0.1]), np.array([0, 0])) is None
    probs = np.array([[0.9, 0.2], [0.3, 0.7], [0.1, 0.4]])
    truth = np.array([[1, 0], [0, 1], [0, 1]])
    micro, precision, recall, f1 = f1_scores(probs, truth, 0.5)  # predicted: (1,0) (0,1) (0,0) -> tp 2, fp 0, fn 1
    assert micro == pytest.approx(4 / 5)
    np.testing.assert_allclose(precision, [1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 0.5])
    np.testing.assert_allclose(f1, [1.0, 2 / 3])
    assert choose_threshold(probs, truth) == pytest.approx(0.35)  # lowest threshold with every answer right
    summary, per_class = multi_label_metrics(probs, truth, ["a", "b"], 0.35)
    assert summary["f1"] == 1.0 and summary["exact_match"] == 1.0 and summary["mAP"] == 1.0


def test_multi_label_trainer_metrics_count_exact_matches_and_all_labels_in_top_k(mnist_small):
    from keras_cnn.training.build import build_training

    from conftest import mnist_config

    cfg = mnist_config(mnist_small, "unused", "data.multi_label=true", "data.batch_size=4")
    built = build_training(cfg, image_shape=(28, 28, 1), num_classes=10, steps_per_epoch=1)
    trainer = built.trainer
    logits = tf.constant([[2.0, -1, -1, -1, 3, -2, -2, -2, -2, -2], [1.0, 1, -1, -1, -1, -1, -1, -1, -1, -1]])
    labels = tf.constant([[1, 0, 0, 0, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(trainer._hits(logits, labels).numpy(), [1, 0])
    np.testing.assert_array_equal(trainer._top_k_hits(logits, labels, 2).numpy(), [1, 0])
    per_example = trainer.loss_fn(labels, logits).numpy()
    expected = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(labels, tf.float32), logits), -1)
    np.testing.assert_allclose(per_example, expected.numpy(), rtol=1e-6)


def test_a_multi_label_run_learns_and_saves_its_threshold(multi_label_run, tmp_path, capsys):
    record = json.loads((multi_label_run / "config.json").read_text())
    chosen = record["multi_label"]
    assert 0.05 <= chosen["threshold"] <= 0.95 and set(chosen["val_ap"]) == set(record["data"]["class_names"])
    # The training pairs, overfit: far above the mAP of random scores (about 0.25 for 2 of 10 classes).
    out = tmp_path / "eval"
    assert evaluate_cli.main(["--run", str(multi_label_run), "--split", "train", "--output-dir", str(out)]) == 0
    train_eval = json.loads((out / "evaluation.json").read_text())
    assert train_eval["mAP"] > 0.6, train_eval
    # evaluate.py on validation reproduces the run's own numbers, through the run and its export alike.
    for flag, path in (("--run", multi_label_run), ("--saved-model", multi_label_run / "saved_model" / "1")):
        assert evaluate_cli.main([flag, str(path), "--output-dir", str(tmp_path / flag)]) == 0
        summary = json.loads((tmp_path / flag / "evaluation.json").read_text())
        assert summary["mAP"] == pytest.approx(chosen["val_mAP"], abs=1e-4)
        assert summary["threshold"] == chosen["threshold"]
    rows = list(csv.DictReader(open(tmp_path / "--run" / "per_class.csv")))
    assert [r["class"] for r in rows] == record["data"]["class_names"] and "ap" in rows[0]
    assert not (tmp_path / "--run" / "confusion_matrix.csv").exists()
    capsys.readouterr()


def test_a_multi_label_export_serves_sigmoids_and_the_classes_above_the_threshold(multi_label_run, pairs, capsys):
    import keras

    record = json.loads((multi_label_run / "config.json").read_text())
    threshold = record["multi_label"]["threshold"]
    loaded = tf.saved_model.load(str(multi_label_run / "saved_model" / "1"))
    image_path = pairs.parent / "images" / "00130.png"
    image = tf.io.decode_png(tf.io.read_file(str(image_path)), channels=3)[None]
    served = loaded.signatures["serving_default"](images=image)
    from keras_cnn.data.pipeline import eval_inputs
    from keras_cnn.run_dir import RunDir

    run = RunDir(multi_label_run)
    model = keras.saving.load_model(str(multi_label_run / "model.keras"))
    expected = tf.sigmoid(model(eval_inputs(image, run.read_config().data, run.load_normalizer()))).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["above_threshold"].numpy(), expected >= threshold)
    assert predict_cli.main(["--model", str(multi_label_run), str(image_path)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    names = [n for n, above in zip(record["data"]["class_names"], expected[0] >= threshold) if above]
    assert f"(at or above {threshold:.2f}: " in line and all(n in line.split("above")[-1] for n in names), line


def test_class_weights_are_refused_for_multi_label_data(pairs, tmp_path, capsys):
    argv = [
        "--labels",
        str(pairs),
        "--multi-label",
        "--class-weight",
        "balanced",
        "--model",
        "linear",
        "--batch-size",
        "8",
    ]
    assert train_cli.main(argv + ["--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--class-weight weighs single-label classes" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_csv_row_with_too_many_fields_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat,extra\n")
    with pytest.raises(UsageError, match="more fields than the header's"):
        read_labels_csv(str(tmp_path / "l.csv"))


def test_tune_takes_labels_and_multi_label_and_reproduces_them(pairs, tmp_path, capsys):
    from tuning import tune

    argv = ["--labels", str(pairs), "--multi-label", "--model", "cnn", "--max-trials", "1", "--epochs-per-trial", "1"]
    argv += ["--output-dir", str(tmp_path), "--set", "data.batch_size=24", "--set", "run.precision=float32"]
    assert tune.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 finished" in out and f"--data-dir {pairs} --multi-label" in out, out
    (config,) = tmp_path.glob("*/runs/*/config.json")
    record = json.loads(config.read_text())
    assert record["config"]["data"]["multi_label"] is True and "threshold" in record["multi_label"]


def test_prepare_keeps_a_single_label_csv_and_refuses_a_multi_label_one(cifar_folder, pairs, tmp_path, capsys):
    from keras_cnn.cli import prepare

    labels = write_csv(tmp_path / "photos" / "labels.csv", folder_rows(cifar_folder, tmp_path / "photos", 6, 2))
    assert prepare.main([str(labels), str(tmp_path / "prepared"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["class_names"] == sorted(os.listdir(cifar_folder))
    assert prepare.main([str(pairs), str(tmp_path / "prepared-pairs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds multi-label rows" in err[0], err
    assert not (tmp_path / "prepared-pairs").exists()


def test_diagnose_refuses_multi_label_data_in_one_line(pairs, tmp_path, capsys):
    from keras_cnn.cli import diagnose

    argv = ["--model", "cnn", "--labels", str(pairs), "--multi-label", "--output-dir", str(tmp_path / "diag")]
    assert diagnose.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "assume one softmax class per image" in err[0], err
    assert not (tmp_path / "diag").exists()


def test_evaluate_takes_a_labels_csv_for_another_set(multi_label_run, pairs, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--run", str(multi_label_run), "--labels", str(pairs), "--split", "all", "--output-dir", str(out)]
    assert evaluate_cli.main(argv) == 0
    summary = json.loads((out / "evaluation.json").read_text())
    train_rows = sum(row["split"] == "train" for row in csv.DictReader(open(pairs)))
    assert summary["images"] == train_rows > 100 and summary["source"] == str(pairs)  # the CSV's training rows
    assert "mAP" in capsys.readouterr().out


def test_a_row_of_empty_fields_plus_extras_is_refused_not_crashed_on(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\n,,extra\n")
    with pytest.raises(UsageError, match="line 2: more fields than the header's"):
        read_labels_csv(str(tmp_path / "l.csv"))
