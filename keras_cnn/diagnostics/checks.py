"""Babysitting the learning process (CS231n lecture 6) as checks.

Each check returns a Check(name, status, value, detail) with status pass | warn | fail:
initial loss, that regularization raises it, overfitting a tiny subset, a learning-rate range
test, activation statistics at initialization, update/weight ratios, and a float64 gradient
check. The checks that train build through keras_cnn.training.build, so they exercise the same
model, optimizer and compiled step as a training run.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.diagnostics.figures import plot_lr_range
from keras_cnn.interrupts import raise_if_requested
from keras_cnn.training.build import build_training
from keras_cnn.training.layer_stats import activation_kind, activation_layers, kernels

KINKED = ("relu", "leaky_relu", "prelu", "maxout", "relu6")  # piecewise-linear units a finite difference can straddle


@dataclasses.dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    value: float | None
    detail: str

    def row(self):
        return {
            "check": self.name,
            "status": self.status,
            "value": "" if self.value is None else self.value,
            "detail": self.detail,
        }


def logits_of(model, images, *, training=True, batch_size=None):
    """The model's float32 logits for `images`, in chunks of `batch_size`: a Keras functional call holds
    every layer's output until it returns, ~100 MB per image for a convnet at photo sizes."""
    batch_size = batch_size or len(images)
    chunks = [model(images[i : i + batch_size], training=training) for i in range(0, len(images), batch_size)]
    return tf.cast(tf.concat(chunks, axis=0), tf.float32)


def mean_loss(model, images, labels, *, training=True, include_regularization=False, batch_size=None):
    logits = logits_of(model, images, training=training, batch_size=batch_size)
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
    if include_regularization and model.losses:
        loss += float(tf.add_n(model.losses))
    return loss


def _single_replica(cfg, **sections):
    """cfg for a diagnostic: one replica, no EMA, no export, and the given section fields."""
    base = {"run": {"strategy": "default", "steps_per_call": 1}, "ema": {"enabled": False}}
    for section, fields in sections.items():
        base[section] = {**base.get(section, {}), **fields}
    return cfg.replace(**base)


def _batches(images, labels, batch_size, seed=0):
    """An endless shuffled stream of (images, labels) batches for a single-replica Trainer."""
    ds = tf.data.Dataset.from_tensor_slices((images, tf.cast(labels, tf.int32)))
    ds = (
        ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
    return iter(ds.prefetch(2))


# ------------------------------------------------------------------------- 1. initial loss


def initial_loss_check(model, images, labels, num_classes, *, batch_size=None):
    """At initialization the loss should be near ln(num_classes), or what the logits' scale explains.

    For logits of standard deviation s across classes the expected loss is about
    ln(K) + s^2 / 2, so a He-initialized last layer (s ~ 1.5) starts well above ln(K) without
    anything being wrong. Measured in training mode, as the first step sees it: BatchNorm's
    moving statistics are still (0, 1) at initialization.
    """
    expected = math.log(num_classes)
    logits = logits_of(model, images, batch_size=batch_size)
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
    scale = float(tf.reduce_mean(tf.math.reduce_std(logits, axis=-1)))
    explained = expected + scale**2 / 2
    head = f"loss {loss:.3f} vs ln({num_classes}) = {expected:.3f}; logits start with std {scale:.2f}"
    if loss > 3 * expected:
        return Check(
            "initial_loss",
            "fail",
            round(loss, 4),
            f"{head}: far too high; the weights start far too large "
            "(lower the initializer's scale or pick a fan-in one such as --kernel-initializer he_normal) "
            "or the labels do not match the outputs",
        )
    if abs(loss - expected) <= 0.25 * expected:
        return Check("initial_loss", "pass", round(loss, 4), head)
    if scale < 2.5 and loss <= 1.5 * explained + 0.1:
        return Check(
            "initial_loss",
            "pass",
            round(loss, 4),
            f"{head}, which explains it (about ln(K) + std^2/2 = "
            f"{explained:.2f}); a smaller last-layer initializer would start nearer ln({num_classes})",
        )
    advice = (
        (
            "the logits start large: lower the initializer's scale (e.g. --kernel-initializer lecun_normal, "
            "or random_normal)"
        )
        if scale >= 2.5
        else (
            "higher than the logits' scale explains "
            f"({explained:.2f}): check that the labels match the outputs and the loss"
        )
    )
    return Check("initial_loss", "warn", round(loss, 4), f"{head}: {advice}")


def regularization_raises_loss_check(plain_model, regularized_model, images, labels, *, batch_size=None):
    """The same weights with L2 on must score a higher total loss than without (both in training mode,
    so BatchNorm normalizes by the batch, as the first step would)."""
    regularized_model.set_weights(plain_model.get_weights())
    without = mean_loss(plain_model, images, labels, batch_size=batch_size)
    with_reg = mean_loss(regularized_model, images, labels, include_regularization=True, batch_size=batch_size)
    status = "pass" if with_reg > without else "fail"
    return Check(
        "regularization_raises_loss",
        status,
        round(with_reg - without, 6),
        f"loss {without:.4f} without regularization, {with_reg:.4f} with it",
    )


# ---------------------------------------------------------------------- 2. overfit a subset


def overfit_check(cfg, images, labels, num_classes, *, learning_rate=1e-3, max_passes=300, batch_size=None):
    """A healthy net with regularization off drives training accuracy on ~20 examples to 100%
    (Adam at `learning_rate`, the run's own model, precision and compiled step).

    All of them in one batch where `batch_size` allows; else in equal micro-batches of at most that
    many (the largest divisor of the count, so every pass sees each example once): at photo sizes
    20 images of activations are gigabytes. `max_passes` counts passes over the examples.
    """
    count = len(labels)
    batch = max(d for d in range(1, count + 1) if count % d == 0 and d <= (batch_size or count))
    per_pass = count // batch
    cfg = _single_replica(
        cfg,
        optimizer={
            "name": "adam",
            "learning_rate": learning_rate,
            "weight_decay": 0.0,
            "label_smoothing": 0.0,
            "clipnorm": None,
        },
        schedule={"name": "constant", "warmup_epochs": 0.0},
        data={"batch_size": batch},
    )
    built = build_training(
        cfg,
        image_shape=images.shape[1:],
        num_classes=num_classes,
        steps_per_epoch=max_passes * per_pass,
        strategy=tf.distribute.get_strategy(),
    )
    examples = (tf.constant(images), tf.constant(labels, tf.int32))
    stream = iter(tf.data.Dataset.from_tensor_slices(examples).shuffle(count, seed=0).repeat().batch(batch))
    everything = tf.data.Dataset.from_tensor_slices(examples).batch(batch)
    accuracy, loss = 0.0, float("nan")
    done = f" in batches of {batch}" if batch < count else ""
    for passes in range(10, max_passes + 1, 10):
        raise_if_requested("during the overfitting check", STOPPED)
        totals = built.trainer.train_steps(stream, 10 * per_pass)
        loss = totals[0] / totals[2]
        accuracy = built.trainer.evaluate(everything)["accuracy"]
        if accuracy == 1.0:
            return Check(
                "overfit_tiny_subset",
                "pass",
                accuracy,
                f"100% of {count} examples after {passes} passes{done} (loss {loss:.4f})",
            )
    return Check(
        "overfit_tiny_subset",
        "fail",
        accuracy,
        f"{accuracy:.0%} of {count} examples after {max_passes} passes{done} (loss {loss:.4f}); "
        "check the learning rate and the model",
    )


# --------------------------------------------------------------------- 3. LR range test


class ExponentialRamp(keras.optimizers.schedules.LearningRateSchedule):
    """low * (high / low) ** (step / steps): the LR range test's sweep (Smith 2017)."""

    def __init__(self, low, high, steps):
        self.low, self.high, self.steps = low, high, steps

    def __call__(self, step):
        fraction = tf.cast(step, tf.float32) / float(max(self.steps - 1, 1))
        return self.low * tf.pow(self.high / self.low, fraction)

    def get_config(self):
        return {"low": self.low, "high": self.high, "steps": self.steps}


def smooth_losses(losses, beta=0.9):
    """Exponentially weighted moving average with bias correction (as fastai's LR finder)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return np.array(out)


def suggest_learning_rate(rates, losses, *, beta=0.9, diverge_factor=4.0):
    """A usable rate from an LR range test: (suggestion, rate at the smoothed minimum, points used).

    The loss is smoothed (exponentially weighted, bias corrected) and the sweep cut where the
    smoothed loss exceeds `diverge_factor` times its running minimum. The suggestion is the
    steepest descent of the smoothed loss against log(lr) before the minimum, capped at the
    minimum's rate / 10 (the minimum itself is already too fast to train at).
    """
    rates, smooth = np.asarray(rates, float), smooth_losses(losses, beta)
    stop, running_min = len(smooth), np.inf
    for i, value in enumerate(smooth):
        if not np.isfinite(value) or (i > 0 and value > diverge_factor * running_min):
            stop = i
            break
        running_min = min(running_min, value)
    rates, smooth = rates[:stop], smooth[:stop]
    lowest = int(np.argmin(smooth))
    cap = float(rates[lowest]) / 10
    if lowest < 3:  # the loss never fell: the smallest rate is all the sweep can say
        return float(rates[0]), float(rates[lowest]), stop
    slope = np.gradient(smooth[: lowest + 1], np.log(rates[: lowest + 1]))
    skip = min(len(smooth) // 10, lowest - 1)  # the first points carry the smoothing's warm-up
    # An exponential average trails its input by beta / (1 - beta) steps: credit the slope to the
    # step the average is centred on, or the suggestion drifts toward faster rates.
    lag = int(round(beta / (1 - beta)))
    steepest = max(skip + int(np.argmin(slope[skip:])) - lag, 0)
    return min(float(rates[steepest]), cap), float(rates[lowest]), stop


def lr_range_test(cfg, images, labels, num_classes, *, low=1e-6, high=10.0, steps=200, plot_path=None):
    """Raise the LR exponentially each step (SGD, the run's momentum) and read a usable rate off the loss."""
    cfg = _single_replica(cfg, optimizer={"clipnorm": None}, data={"batch_size": min(cfg.data.batch_size, len(labels))})
    built = build_training(
        cfg,
        image_shape=images.shape[1:],
        num_classes=num_classes,
        steps_per_epoch=steps,
        strategy=tf.distribute.get_strategy(),
        learning_rate=ExponentialRamp(low, high, steps),
    )
    stream = _batches(images, labels, cfg.data.batch_size, cfg.run.seed)
    rates, losses = np.geomspace(low, high, steps), []
    for _ in range(steps):
        raise_if_requested("during the learning-rate range test", STOPPED)
        totals = built.trainer.train_steps(stream, 1)
        losses.append(float(totals[0] / totals[2]))
        if not math.isfinite(losses[-1]) or losses[-1] > 4 * min(losses) and len(losses) > 10:
            break
    suggestion, lowest, stop = suggest_learning_rate(rates[: len(losses)], losses)
    if plot_path:
        plot_lr_range(rates[: len(losses)], losses, smooth_losses(losses), suggestion, lowest, plot_path)
    falls = min(losses) < losses[0] * 0.9
    detail = (
        f"suggested lr {suggestion:.2g} (steepest fall of the smoothed loss; its minimum at {lowest:.2g})"
        if falls
        else f"the loss never fell below 90% of its start up to lr {rates[len(losses) - 1]:.2g}: "
        f"suggested lr {suggestion:.2g} is a guess; check the model and data first"
    )
    return Check("lr_range", "pass" if falls else "warn", float(suggestion), detail)


def activation_check(stats):
    if not stats:
        return Check("activation_statistics", "pass", None, "no activation layers")
    problems = []
    for s in stats:
        if s["fraction_zero"] > 0.9:
            problems.append(f"{s['layer']} {s['fraction_zero']:.0%} zeros")
        if s["fraction_saturated"] is not None and s["fraction_saturated"] > 0.5:
            problems.append(f"{s['layer']} {s['fraction_saturated']:.0%} saturated")
    if len(stats) > 1 and stats[0]["std"] > 0 and stats[-1]["std"] / stats[0]["std"] < 1e-2:
        problems.append(f"activations collapse: std {stats[0]['std']:.3g} -> {stats[-1]['std']:.3g}")
    return Check(
        "activation_statistics",
        "warn" if problems else "pass",
        None,
        "; ".join(problems) or f"{len(stats)} layers, std {stats[0]['std']:.3g} -> {stats[-1]['std']:.3g}",
    )


def update_ratio_check(cfg, images, labels, num_classes, *, learning_rate, steps=5):
    """||update|| / ||W|| per kernel over a few SGD steps of the run's own model; ~1e-3 is the rule of thumb."""
    cfg = _single_replica(
        cfg,
        optimizer={"name": "sgd", "learning_rate": learning_rate},
        schedule={"name": "constant", "warmup_epochs": 0.0},
        data={"batch_size": min(cfg.data.batch_size, len(labels))},
    )
    built = build_training(
        cfg,
        image_shape=images.shape[1:],
        num_classes=num_classes,
        steps_per_epoch=steps,
        strategy=tf.distribute.get_strategy(),
    )
    stream = _batches(images, labels, cfg.data.batch_size, cfg.run.seed)
    watched = kernels(built.model)
    ratios = {v.path: [] for v in watched}
    for _ in range(steps):
        before = [v.numpy().copy() for v in watched]
        built.trainer.train_steps(stream, 1)
        for v, old in zip(watched, before):
            ratios[v.path].append(np.linalg.norm(v.numpy() - old) / max(np.linalg.norm(old), 1e-12))
    means = {k: float(np.mean(r)) for k, r in ratios.items()}
    far = [f"{k} {r:.1e}" for k, r in means.items() if not 1e-4 <= r <= 1e-2]
    detail = ("far from 1e-3: " + ", ".join(far)) if far else "every layer within [1e-4, 1e-2]"
    return Check(
        "update_weight_ratio", "warn" if far else "pass", float(np.median(list(means.values()))), detail
    ), means


# ------------------------------------------------------------------- 6. gradient check


def _finite_difference_errors(model, loss_fn, analytic, rng, per_variable, epsilon, recheck_above=1e-6):
    here = float(loss_fn())
    errors = {}
    for variable, grad in zip(model.trainable_variables, analytic):
        grad = np.zeros(variable.shape) if grad is None else grad.numpy()
        flat = variable.numpy().ravel()
        worst = 0.0
        for index in rng.choice(flat.size, size=min(per_variable, flat.size), replace=False):
            a = grad.ravel()[index]
            centred, _, _ = _differences(variable, flat, index, loss_fn, epsilon, here)
            error = _relative_error(a, centred)
            if error >= recheck_above:
                # A ReLU (or, through BatchNorm's batch statistics, any of the thousands of units one
                # weight moves) with its kink inside +-epsilon makes the centred difference the mean
                # of two slopes; the analytic gradient is then the one-sided slope on the kink-free
                # side. So a tenth of the step, centred and one-sided: a wrong gradient matches none.
                error = min(
                    error,
                    *(_relative_error(a, n) for n in _differences(variable, flat, index, loss_fn, epsilon / 10, here)),
                )
            worst = max(worst, error)
        layer = variable.path.rsplit("/", 1)[0]
        errors[layer] = max(errors.get(layer, 0.0), worst)
    return errors


def _differences(variable, flat, index, loss_fn, epsilon, here):
    """(centred, forward, backward) finite differences of the loss in one weight; `here`: the loss
    at the unperturbed weights."""
    original = flat[index]
    values = []
    for delta in (epsilon, -epsilon):
        flat[index] = original + delta
        variable.assign(flat.reshape(variable.shape))
        values.append(float(loss_fn()))
    flat[index] = original
    variable.assign(flat.reshape(variable.shape))
    up, down = values
    return (up - down) / (2 * epsilon), (up - here) / epsilon, (here - down) / epsilon


def _relative_error(a, numeric):
    return abs(a - numeric) / max(abs(a), abs(numeric), 1e-12)


STOPPED = "no diagnostics were written; rerun diagnose.py to check again"
KINK_ERROR = 1e-4  # CS231n: what kinks of ReLU-like units or max pooling explain in a correct gradient


def is_kinked(model):
    kinds = {activation_kind(layer) for layer in activation_layers(model)}
    pooled = any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    return bool(kinds & set(KINKED)) or pooled or any("maxout" in k for k in kinds)


def likely_cause(model):
    """What explains a modest gradient-check error in this net: kinks of piecewise-linear units
    crossed by the finite difference, or (smooth nets) saturated sigmoid/tanh units."""
    if is_kinked(model):
        return "kinks of ReLU-like units or max pooling crossed by the finite difference can cause up to ~1e-4"
    return (
        "this net is smooth (sigmoid/tanh units have no kinks), so the error is not from kinks: saturated units "
        "lose float64 precision; larger errors mean a wrong gradient"
    )


def gradient_check(model, images, labels, *, per_variable=6, epsilon=1e-6, threshold=1e-6, wrong=1e-2, seed=0):
    """Analytic gradients against centred finite differences, in float64, per layer.

    The model must be built under the float64 policy, without dropout. Relative error per
    entry is |a - n| / max(|a|, |n|, 1e-12); each layer reports its largest. Training mode
    (BatchNorm on batch statistics, deterministic without dropout), so the loss is the
    well-scaled one the optimizer sees.
    """
    images, labels = tf.constant(images, tf.float64), tf.constant(labels)

    @tf.function
    def loss_fn():
        logits = model(images, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float64)))

    with tf.GradientTape() as tape:
        loss = loss_fn()
    analytic = tape.gradient(loss, model.trainable_variables)
    errors = _finite_difference_errors(model, loss_fn, analytic, np.random.default_rng(seed), per_variable, epsilon)
    # CS231n's scale: < 1e-7 happy, up to ~1e-4 explainable, > 1e-2 almost surely a wrong gradient.
    flagged = {k: v for k, v in errors.items() if v >= threshold}
    worst = max(errors.values())
    if not flagged:
        return Check(
            "gradient_check", "pass", worst, f"max relative error {worst:.1e} over {len(errors)} layers"
        ), errors
    if is_kinked(model) and worst < KINK_ERROR:  # what the net's own kinks explain is not a warning
        return Check(
            "gradient_check",
            "pass",
            worst,
            f"max relative error {worst:.1e} over {len(errors)} layers, within the ~{KINK_ERROR:g} that "
            "kinks of ReLU-like units or max pooling explain",
        ), errors
    listing = ", ".join(f"{k} {v:.1e}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1])[:6])
    if worst >= wrong:
        return Check(
            "gradient_check", "fail", worst, f"wrong gradient likely (relative error >= {wrong:g}): {listing}"
        ), errors
    return Check(
        "gradient_check", "warn", worst, f"relative error >= {threshold:g}: {listing}; {likely_cause(model)}"
    ), errors
