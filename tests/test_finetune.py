"""Fine-tuning in phases (training.finetune): --freeze-epochs, --unfreeze, --backbone-lr-multiplier.

The frozen phase leaves every backbone value (BatchNorm statistics included) bit-identical, the
fine-tune phase moves it; the multiplier scales the backbone's updates and nothing else; a run
stopped inside either phase, or exactly at the boundary, resumes to the weights of a straight run.
"""

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.cli import train as train_cli
from keras_cnn.config import TrainConfig, apply_overrides
from keras_cnn.models import create_model
from keras_cnn.models.applications import make_backbone
from keras_cnn.training.finetune import FINE_TUNE, FROZEN, FineTuning, backbone_layers, classifier_layer

from conftest import mnist_config, tiny_run


def values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


class Snapshots(keras.callbacks.Callback):
    """Every backbone and classifier value at the start of training and at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.backbone, self.classifier = [], []

    def _take(self):
        self.backbone.append(values(self.model.get_layer("backbone").variables))
        self.classifier.append(values(self.model.get_layer("logits").variables))

    def on_train_begin(self, logs=None):
        self._take()

    def on_epoch_end(self, epoch, logs=None):
        self._take()


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_frozen_epochs_leave_the_backbone_bit_identical_and_unfreezing_moves_it(cifar_folder, tmp_path):
    make_backbone("MobileNetV3Small", (32, 32, 3)).save_weights(tmp_path / "small.weights.h5")
    cfg = tiny_run(
        "keras_mobilenetv3small",
        cifar_folder,
        tmp_path,
        f"run.weights={tmp_path / 'small.weights.h5'}",
        "run.freeze_epochs=2",
        "run.epochs=3",
        "run.export=false",
    )
    snaps = Snapshots()
    result = keras_cnn.train(cfg, callbacks=[snaps], verbose=0)
    assert [r["phase"] for r in result.history] == [FROZEN, FROZEN, FINE_TUNE]
    assert same(snaps.backbone[0], snaps.backbone[2])  # two frozen epochs: kernels and BN statistics
    assert not same(snaps.classifier[0], snaps.classifier[1])  # ...while the classifier trained
    assert not same(snaps.backbone[2], snaps.backbone[3])  # unfrozen, it moves
    bn = [
        v.path
        for layer in result.model.get_layer("backbone").layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.variables
    ]
    names = [v.path for v in result.model.get_layer("backbone").variables]
    bn_at = [names.index(p) for p in bn]
    assert bn_at and all(np.array_equal(snaps.backbone[2][i], snaps.backbone[3][i]) for i in bn_at)  # not --train-bn
    header = (tmp_path / "keras_mobilenetv3small-cifar10" / "history.csv").read_text().splitlines()[0]
    assert header.endswith(",phase")


def test_unfreeze_k_trains_the_top_k_weighted_layers_and_the_classifier():
    model = create_model("keras_mobilenetv3small", (32, 32, 3), 3)
    ft = FineTuning(model, freeze_epochs=1, unfreeze="3", freeze_bn=True)
    assert classifier_layer(model).name == "logits" and len(backbone_layers(model)) > 50
    ft.enter(ft.phase_of(0))
    assert [v.path for v in model.trainable_variables] == [v.path for v in model.get_layer("logits").variables]
    ft.enter(ft.phase_of(1))
    top = backbone_layers(model)[-3:]
    expected = [
        v.path
        for layer in top
        if not isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.trainable_weights
    ]
    assert [v.path for v in model.trainable_variables] == expected + [
        v.path for v in model.get_layer("logits").variables
    ]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_backbone_multiplier_scales_the_backbone_update_and_not_the_classifier(optimizer, mnist_small):
    """One step from the same weights and batch, multiplier 0.1 against 1: the backbone's update is
    0.1 times as large (Adam too, whose update ignores a gradient's scale), the classifier's the same."""
    from keras_cnn.training.build import build_training

    x = np.random.default_rng(0).normal(size=(32, 28, 28, 1)).astype("float32")
    y = np.arange(32, dtype="int32") % 10
    deltas = {}
    for multiplier in (1.0, 0.1):
        cfg = mnist_config(
            mnist_small,
            "unused",
            f"optimizer.name={optimizer}",
            "optimizer.learning_rate=0.01",
            "schedule.name=constant",
            "data.batch_size=32",
            f"run.backbone_lr_multiplier={multiplier}",
        )
        keras.utils.set_random_seed(3)
        built = build_training(cfg, image_shape=(28, 28, 1), num_classes=10, steps_per_epoch=1)
        before = values(built.model.trainable_variables)
        dataset = built.strategy.experimental_distribute_dataset(
            __import__("tensorflow").data.Dataset.from_tensors((x, y)).repeat()
        )
        built.trainer.train_steps(iter(dataset), 1)
        deltas[multiplier] = [a - b for a, b in zip(values(built.model.trainable_variables), before, strict=True)]
    classifier = {v.path for v in built.model.get_layer("logits").variables}
    for variable, full, scaled in zip(built.model.trainable_variables, deltas[1.0], deltas[0.1], strict=True):
        factor = 1.0 if variable.path in classifier else 0.1
        assert np.abs(full).max() > 0
        np.testing.assert_allclose(scaled, factor * full, rtol=1e-4, atol=1e-8, err_msg=variable.path)


class StopAt(keras.callbacks.Callback):
    """A crash at (epoch, batch): batch None crashes as the epoch begins, after the last checkpoint."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if epoch == self.at and self.batch is None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.at and self.batch is not None and batch >= self.batch:
            raise KeyboardInterrupt


def test_a_run_stopped_in_either_phase_or_at_the_boundary_resumes_to_the_straight_run(
    trained_mlp, mnist_small, tmp_path
):
    overrides = (
        f"run.init_from={trained_mlp.run_dir}",
        "run.freeze_epochs=1",
        "run.backbone_lr_multiplier=0.5",
        "run.epochs=2",
        "run.checkpoint_every_steps=4",
        "run.steps_per_call=2",
        "run.steps_per_epoch=8",
        "data.batch_size=32",
        "ema.enabled=true",
    )
    straight = keras_cnn.train(mnist_config(mnist_small, tmp_path / "straight", *overrides), verbose=0)
    assert [r["phase"] for r in straight.history] == [FROZEN, FINE_TUNE]
    for label, (epoch, batch) in {"mid-frozen": (0, 5), "boundary": (1, None), "mid-fine-tune": (1, 5)}.items():
        cfg = mnist_config(mnist_small, tmp_path / label, *overrides)
        with pytest.raises(KeyboardInterrupt):
            keras_cnn.train(cfg, callbacks=[StopAt(epoch, batch)], verbose=0)
        resumed = keras_cnn.train(cfg, verbose=0)
        assert [r["phase"] for r in resumed.history] == [FROZEN, FINE_TUNE], label
        for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=f"{label}: {a.path}")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--freeze-epochs", "1"], "fine-tune trained weights: pass --weights"),
        (["--unfreeze", "top"], "--unfreeze takes all or a number of layers K >= 1"),
        (["--unfreeze", "0"], "--unfreeze takes all or a number of layers K >= 1"),
        (["--backbone-lr-multiplier", "0"], "run.backbone_lr_multiplier"),
        (["--freeze-epochs", "-1"], "run.freeze_epochs"),
    ],
)
def test_fine_tuning_flags_that_make_no_sense_end_in_one_line(flags, needle, mnist_small, tmp_path, capsys):
    argv = ["--model", "mlp", "--dataset", "mnist", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)]
    assert train_cli.main(argv + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not any(tmp_path.iterdir())


def test_the_config_default_is_no_phases():
    cfg = TrainConfig()
    assert (cfg.run.freeze_epochs, cfg.run.unfreeze, cfg.run.backbone_lr_multiplier) == (0, "all", 1.0)
    assert apply_overrides(cfg, ["run.unfreeze=12"]).run.unfreeze == "12"


def test_init_from_a_run_of_another_class_count_takes_all_but_the_classifier(
    trained_cifar, cifar_folder, tmp_path, capsys
):
    """resnet20 trained on 10 CIFAR classes warm-starts a 3-class run: every weight but the classifier
    is the donor's, the classifier is new, and the freeze flags apply; another depth is refused."""
    import shutil

    three = tmp_path / "three"
    for name in ("cat", "dog", "ship"):
        shutil.copytree(cifar_folder / name, three / name)
    argv = ["--model", "resnet20", "--shortcut", "identity", "--data-dir", str(three)]
    argv += ["--output-dir", str(tmp_path / "runs"), "--epochs", "1", "--batch-size", "16", "--freeze-epochs", "1"]
    argv += ["--init-from", trained_cifar.run_dir, "--set", "run.export=false", "--set", "data.val_size=16"]
    assert train_cli.main(argv + ["--name", "three"]) == 0
    donor = keras.models.load_model(f"{trained_cifar.run_dir}/model.keras")
    tuned = keras.models.load_model(tmp_path / "runs" / "three" / "model.keras")
    assert tuned.get_layer("logits").kernel.shape == (64, 3)
    for layer in backbone_layers(tuned):  # frozen for the run's one epoch: still the donor's, exactly
        for mine, theirs in zip(layer.weights, donor.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    capsys.readouterr()
    other = [a if a != "resnet20" else "resnet32" for a in argv]
    assert train_cli.main(other + ["--name", "deeper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other layer shapes" in err[0] and "do not fit this model" in err[0], err
    assert not (tmp_path / "runs" / "deeper").exists()
