"""--class-weight: inverse-frequency or named loss weights, in the training loss only."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import train as train_cli
from keras_cnn.errors import UsageError
from keras_cnn.training.class_weights import class_weights

from conftest import mnist_config

NAMES = ["cat", "dog", "ship"]


def test_balanced_weights_invert_the_class_frequencies_and_average_one():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights("balanced", labels, NAMES)
    np.testing.assert_allclose(weights, [10 / 18, 10 / 9, 10 / 3], rtol=1e-6)
    assert weights[labels].mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(class_weights("dog=2.5,2=0", labels, NAMES), [1, 2.5, 0])
    assert class_weights(None, labels, NAMES) is None and class_weights("none", labels, NAMES) is None


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("horse=2", "'horse=2' is not CLASS=WEIGHT for a class of this data (cat, dog, ship)"),
        ("cat", "'cat' is not CLASS=WEIGHT"),
        ("cat=heavy", "the weight of 'cat' must be a number >= 0"),
        ("cat=-1", "the weight of 'cat' must be a number >= 0"),
        ("cat=0,dog=0,ship=0", "weighs every class 0"),
        ("balanced", "class 'ship' has no training images"),
    ],
)
def test_class_weights_that_cannot_apply_are_refused_by_name(spec, needle):
    with pytest.raises(UsageError) as err:
        class_weights(spec, np.array([0, 1, 1]), NAMES)
    assert needle in str(err.value)


def test_the_training_loss_is_weighted_and_evaluation_is_not(mnist_small):
    """One step's summed loss is sum(w[y] * cross-entropy) under the weights, the plain sum without."""
    from keras_cnn.training.build import build_training

    x = np.random.default_rng(0).normal(size=(20, 28, 28, 1)).astype("float32")
    y = (np.arange(20) % 10).astype("int32")
    weights = np.linspace(0.5, 3.0, 10).astype("float32")
    cfg = mnist_config(mnist_small, "unused", "optimizer.learning_rate=1e-12", "data.batch_size=20")
    built = build_training(cfg, image_shape=(28, 28, 1), num_classes=10, steps_per_epoch=1, class_weights=weights)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, built.model(x, training=True)).numpy()
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    loss_sum = built.trainer.train_steps(iter(built.strategy.experimental_distribute_dataset(data)), 1)[0]
    assert loss_sum == pytest.approx(float((weights[y] * ce).sum()), rel=1e-4)
    evaluated = built.trainer.evaluate(built.strategy.experimental_distribute_dataset(data.take(1)))["loss"]
    assert evaluated == pytest.approx(float(ce.mean()), rel=1e-4)


def test_a_bad_class_weight_ends_in_one_line_and_writes_nothing(mnist_small, tmp_path, capsys):
    argv = ["--model", "linear", "--dataset", "mnist", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)]
    assert train_cli.main(argv + ["--class-weight", "seven=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not CLASS=WEIGHT for a class of this data" in err[0], err
    assert not any(tmp_path.iterdir())
