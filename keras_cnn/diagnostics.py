"""Babysitting the learning process (CS231n lecture 6) as functions, a CLI and a callback.

Each check returns a Check(name, status, value, detail) with status pass | warn | fail:
initial loss, overfitting a tiny subset, a learning-rate range test, activation statistics
at initialization, update/weight ratios, and a float64 gradient check. `compare_init` draws
the lecture's initialization experiment; `LayerStats` logs per-layer statistics while training.
"""
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_cnn import reports
from keras_cnn.training.loop import Callback

ACTIVATION_TYPES = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU)


@dataclasses.dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    value: float | None
    detail: str

    def row(self):
        return {"check": self.name, "status": self.status, "value": "" if self.value is None else self.value, "detail": self.detail}


def mean_loss(model, images, labels, *, training=False, include_regularization=False):
    logits = model(images, training=training)
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))))
    if include_regularization and model.losses:
        loss += float(tf.add_n(model.losses))
    return loss


# ------------------------------------------------------------------------- 1. initial loss


def initial_loss_check(model, images, labels, num_classes, tolerance=0.25):
    """At initialization the softmax is near uniform: the loss should be near ln(num_classes).

    Measured in training mode, as the first step sees it: at initialization BatchNorm's
    moving statistics are still (0, 1), so inference mode would not normalize at all.
    """
    expected = math.log(num_classes)
    loss = mean_loss(model, images, labels, training=True)
    off = abs(loss - expected) / expected
    status = "pass" if off <= tolerance else "warn" if off <= 1.0 else "fail"
    return Check("initial_loss", status, round(loss, 4), f"expected ln({num_classes}) = {expected:.4f}; off by {off:.0%}")


def regularization_raises_loss_check(plain_model, regularized_model, images, labels):
    """The same weights with L2 on must score a higher total loss than without."""
    regularized_model.set_weights(plain_model.get_weights())
    without = mean_loss(plain_model, images, labels)
    with_reg = mean_loss(regularized_model, images, labels, include_regularization=True)
    status = "pass" if with_reg > without else "fail"
    return Check("regularization_raises_loss", status, round(with_reg - without, 6),
                 f"loss {without:.4f} without regularization, {with_reg:.4f} with it")


# ---------------------------------------------------------------------- 2. overfit a subset


def overfit_check(model, images, labels, *, learning_rate=1e-3, max_steps=300):
    """A healthy net with regularization off drives training accuracy on ~20 examples to 100%."""
    optimizer = keras.optimizers.Adam(learning_rate)
    images, labels = tf.constant(images), tf.constant(labels)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    accuracy = 0.0
    for i in range(1, max_steps + 1):
        loss = float(step())
        if i % 10 == 0 or i == max_steps:
            predictions = tf.argmax(model(images, training=False), -1, output_type=tf.int32)
            accuracy = float(tf.reduce_mean(tf.cast(predictions == labels, tf.float32)))
            if accuracy == 1.0:
                return Check("overfit_tiny_subset", "pass", accuracy, f"100% of {len(labels)} examples after {i} steps (loss {loss:.4f})")
    return Check("overfit_tiny_subset", "fail", accuracy,
                 f"{accuracy:.0%} of {len(labels)} examples after {max_steps} steps (loss {loss:.4f}); check the learning rate and the model")


# --------------------------------------------------------------------- 3. LR range test


def lr_range_test(model, dataset_iter, *, low=1e-6, high=10.0, steps=200, plot_path=None):
    """Raise the LR exponentially each step (Smith 2017); report where loss falls and explodes."""
    rates = np.geomspace(low, high, steps)
    lr_var = tf.Variable(rates[0], dtype=tf.float32)
    optimizer = keras.optimizers.SGD(learning_rate=lambda: lr_var, momentum=0.9)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    losses = []
    for lr in rates:
        lr_var.assign(lr)
        images, labels = next(dataset_iter)
        loss = float(step(images, labels))
        losses.append(loss)
        if not math.isfinite(loss) or loss > 4 * min(losses):
            break
    losses = np.array(losses)
    smooth = np.convolve(losses, np.ones(5) / 5, mode="valid") if len(losses) > 5 else losses
    slopes = np.diff(smooth)
    steepest = int(np.argmin(slopes)) + 2 if len(slopes) else 0
    exploded = rates[len(losses) - 1] if len(losses) < steps else None
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(rates[: len(losses)], losses)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
        ax.axvline(rates[steepest], color="tab:green", ls="--", label=f"steepest fall {rates[steepest]:.2g}")
        if exploded:
            ax.axvline(exploded, color="tab:red", ls="--", label=f"explodes {exploded:.2g}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        reports._save_figure(fig, plot_path)
    falls = losses.min() < losses[0] * 0.9
    detail = f"loss falls fastest near lr {rates[steepest]:.2g}" + (f", explodes above {exploded:.2g}" if exploded else ", never explodes up to the top of the range")
    return Check("lr_range", "pass" if falls else "warn", float(rates[steepest]), detail)


# -------------------------------------------------------------- 4. activation statistics


def activation_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ACTIVATION_TYPES) or "maxout" in layer.name]


def activation_statistics(model, images, *, training=True):
    """Per activation layer: mean, std, fraction of zeros, fraction saturated (tanh/sigmoid).

    Training mode by default (batch statistics in BatchNorm), as in the first training step.
    """
    layers = activation_layers(model)
    probe = keras.Model(model.inputs[0], [layer.output for layer in layers])
    outputs = probe(images, training=training)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    stats = []
    for layer, out in zip(layers, outputs):
        values = tf.cast(out, tf.float32).numpy()
        kind = getattr(layer, "activation", None)
        kind = getattr(kind, "__name__", layer.__class__.__name__.lower())
        if kind == "tanh":
            saturated = float(np.mean(np.abs(values) > 0.99))
        elif kind == "sigmoid":
            saturated = float(np.mean((values < 0.01) | (values > 0.99)))
        else:
            saturated = None
        stats.append({"layer": layer.name, "activation": kind, "mean": float(values.mean()), "std": float(values.std()),
                      "fraction_zero": float(np.mean(values == 0)), "fraction_saturated": saturated, "values": values})
    return stats


def activation_check(stats):
    problems = []
    for s in stats:
        if s["fraction_zero"] > 0.9:
            problems.append(f"{s['layer']} {s['fraction_zero']:.0%} zeros")
        if s["fraction_saturated"] is not None and s["fraction_saturated"] > 0.5:
            problems.append(f"{s['layer']} {s['fraction_saturated']:.0%} saturated")
    if len(stats) > 1 and stats[0]["std"] > 0 and stats[-1]["std"] / stats[0]["std"] < 1e-2:
        problems.append(f"activations collapse: std {stats[0]['std']:.3g} -> {stats[-1]['std']:.3g}")
    return Check("activation_statistics", "warn" if problems else "pass", None,
                 "; ".join(problems) or f"{len(stats)} layers, std {stats[0]['std']:.3g} -> {stats[-1]['std']:.3g}" if stats else "no activation layers")


def plot_activation_histograms(stats, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(stats)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, stats):
        ax.hist(s["values"].ravel(), bins=50, color="tab:blue")
        ax.set_title(f"{s['layer']}\nmean {s['mean']:.2f} std {s['std']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    reports._save_figure(fig, path)


# -------------------------------------------------------------- 5. update/weight ratios


def kernels(model):
    return [v for v in model.trainable_weights if len(v.shape) >= 2]


def update_ratio_check(model, optimizer, dataset_iter, *, steps=5):
    """||lr * update|| / ||W|| per kernel over a few steps; ~1e-3 is the rule of thumb."""
    watched = kernels(model)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            if model.losses:
                loss += tf.add_n(model.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    ratios = {v.path: [] for v in watched}
    for _ in range(steps):
        before = [v.numpy().copy() for v in watched]
        step(*next(dataset_iter))
        for v, old in zip(watched, before):
            ratios[v.path].append(np.linalg.norm(v.numpy() - old) / max(np.linalg.norm(old), 1e-12))
    means = {k: float(np.mean(r)) for k, r in ratios.items()}
    far = [f"{k} {r:.1e}" for k, r in means.items() if not 1e-4 <= r <= 1e-2]
    detail = ("far from 1e-3: " + ", ".join(far)) if far else "every layer within [1e-4, 1e-2]"
    return Check("update_weight_ratio", "warn" if far else "pass", float(np.median(list(means.values()))), detail), means


# ------------------------------------------------------------------- 6. gradient check


def gradient_check(model, images, labels, *, per_variable=6, epsilon=1e-6, threshold=1e-6, wrong=1e-2, seed=0):
    """Analytic gradients against centred finite differences, in float64, per layer.

    The model must be built under the float64 policy, without dropout. Relative error per
    entry is |a - n| / max(|a|, |n|, 1e-12); each layer reports its largest. Training mode
    (BatchNorm on batch statistics, deterministic without dropout), so the loss is the
    well-scaled one the optimizer sees.
    """
    rng = np.random.default_rng(seed)
    images = tf.constant(images, tf.float64)
    labels = tf.constant(labels)

    @tf.function
    def loss_fn():
        logits = model(images, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float64)))

    with tf.GradientTape() as tape:
        loss = loss_fn()
    analytic = tape.gradient(loss, model.trainable_variables)
    errors = {}
    for variable, grad in zip(model.trainable_variables, analytic):
        grad = np.zeros(variable.shape) if grad is None else grad.numpy()
        flat = variable.numpy().ravel()
        worst = 0.0
        for index in rng.choice(flat.size, size=min(per_variable, flat.size), replace=False):
            original = flat[index]
            values = []
            for delta in (epsilon, -epsilon):
                flat[index] = original + delta
                variable.assign(flat.reshape(variable.shape))
                values.append(float(loss_fn()))
            flat[index] = original
            variable.assign(flat.reshape(variable.shape))
            numeric = (values[0] - values[1]) / (2 * epsilon)
            a = grad.ravel()[index]
            worst = max(worst, abs(a - numeric) / max(abs(a), abs(numeric), 1e-12))
        layer = variable.path.rsplit("/", 1)[0]
        errors[layer] = max(errors.get(layer, 0.0), worst)
    # CS231n's scale: < 1e-7 happy, up to ~1e-4 can be ReLU kinks crossed by the finite
    # difference in a deep net, > 1e-2 is almost surely a wrong gradient.
    flagged = {k: v for k, v in errors.items() if v >= threshold}
    worst = max(errors.values())
    if not flagged:
        return Check("gradient_check", "pass", worst, f"max relative error {worst:.1e} over {len(errors)} layers"), errors
    listing = ", ".join(f"{k} {v:.1e}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1])[:6])
    if worst >= wrong:
        return Check("gradient_check", "fail", worst, f"wrong gradient likely (relative error >= {wrong:g}): {listing}"), errors
    return Check("gradient_check", "warn", worst, f"relative error >= {threshold:g} (ReLU kinks can cause up to ~1e-4): {listing}"), errors


# ------------------------------------------------------------------ compare initializers


def compare_init(path, *, activations=("tanh", "relu"), depth=10, width=500, samples=1000, seed=0):
    """CS231n's experiment: a deep MLP's activation std per layer under three initializations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_cnn.models import create_model

    x = np.random.default_rng(seed).normal(size=(samples, 1, 1, width)).astype("float32")
    inits = {"small random (0.01)": "random_normal", "Xavier (glorot_uniform)": "glorot_uniform", "He (he_normal)": "he_normal"}
    table = []
    fig, axes = plt.subplots(1, len(activations), figsize=(6 * len(activations), 4), squeeze=False)
    for ax, activation in zip(axes[0], activations):
        for label, init in inits.items():
            keras.utils.set_random_seed(seed)
            model = create_model("mlp", (1, 1, width), 10, hidden=[width] * depth, activation=activation, kernel_initializer=init)
            stats = activation_statistics(model, x)
            stds = [s["std"] for s in stats]
            ax.plot(range(1, len(stds) + 1), stds, marker="o", label=label)
            table.append({"activation": activation, "initializer": init, **{f"layer{i + 1}_std": float(f"{s:.4g}") for i, s in enumerate(stds)}})
        ax.set_yscale("log")
        ax.set(xlabel="layer", ylabel="activation std", title=f"{depth}-layer {activation} MLP, width {width}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    reports._save_figure(fig, path)
    return table


# --------------------------------------------------------------------- training callback


class LayerStats(Callback):
    """Per epoch: sparsity after each activation, dead units, weight/gradient norms, update ratio.

    Written to <run>/layer_stats.csv (one row per layer and epoch) and to TensorBoard
    (<run>/tensorboard/layer_stats). Dead units: channels never positive over the probe batch.
    """

    COLUMNS = ["epoch", "layer", "fraction_zero", "dead_units", "weight_norm", "gradient_norm", "update_ratio"]

    def __init__(self, run_dir, probe_batch):
        self.run_dir, self.images, self.labels = run_dir, probe_batch[0], probe_batch[1]
        self.rows, self.previous, self.steps_since = [], None, 0
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard", "layer_stats"))

    def on_train_begin(self, trainer):
        model = trainer.model
        self.layers = [layer for layer in activation_layers(model)]
        self.probe = keras.Model(model.inputs[0], [layer.output for layer in self.layers]) if self.layers else None

    def on_batch_end(self, trainer, step, logs):
        # Keep the weights of the previous call so the epoch's last call gives the update ratio.
        self.previous_step, self.snapshot = getattr(self, "current_step", 0), getattr(self, "current", None)
        self.current_step, self.current = step, [v.numpy().copy() for v in kernels(trainer.model)]

    def on_epoch_end(self, trainer, epoch, logs):
        model = trainer.model
        rows = {}
        if self.probe is not None:
            outputs = self.probe(self.images, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for layer, out in zip(self.layers, outputs):
                values = tf.cast(out, tf.float32).numpy()
                active = (values > 0).reshape(-1, values.shape[-1]).any(axis=0)
                rows[layer.name] = {"fraction_zero": float(np.mean(values == 0)), "dead_units": float(1 - active.mean())}
        with tf.GradientTape() as tape:
            logits = tf.cast(model(self.images, training=False), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(self.labels, logits))
        grads = dict(zip((v.path for v in model.trainable_variables), tape.gradient(loss, model.trainable_variables)))
        steps = max(self.current_step - self.previous_step, 1)
        for i, v in enumerate(kernels(model)):
            layer = v.path.rsplit("/", 1)[0]
            weight = v.numpy()
            ratio = None
            if self.snapshot is not None:
                ratio = float(np.linalg.norm(weight - self.snapshot[i]) / max(np.linalg.norm(self.snapshot[i]), 1e-12) / steps)
            g = grads.get(v.path)
            rows.setdefault(layer, {}).update(weight_norm=float(np.linalg.norm(weight)),
                                              gradient_norm=float(tf.norm(g)) if g is not None else None, update_ratio=ratio)
        with self.writer.as_default(step=epoch):
            for layer, stats in rows.items():
                for key, value in stats.items():
                    if value is not None:
                        tf.summary.scalar(f"{layer}/{key}", value)
        self.writer.flush()
        self.rows += [{"epoch": epoch, "layer": layer, **stats} for layer, stats in rows.items()]
        reports.atomic_write(os.path.join(self.run_dir, "layer_stats.csv"), reports.csv_text(self.rows, self.COLUMNS))
        logs["dead_units_max"] = max((s.get("dead_units", 0) for s in rows.values()), default=0.0)
