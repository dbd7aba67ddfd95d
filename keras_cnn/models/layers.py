"""Custom layers, and LayerOptions: the options every model family shares and the layers built with them."""

import dataclasses
import typing
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.errors import UsageError, choose
from keras_cnn.kernels import BatchNorm, Conv2D
from keras_cnn.models.registry import Option, Spec
from keras_cnn.rules import Rule


@keras.saving.register_keras_serializable(package="keras_cnn")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, section 3.3).

    b = a / (bias + alpha * sum_{d-r..d+r} a^2) ** beta, with TensorFlow's convention:
    alpha multiplies the plain sum (PyTorch's LocalResponseNorm divides its alpha by the
    window size, so torch alpha=1e-3, size=9 equals alpha=1e-3/9 here, depth_radius=4).
    Computes in float32: TF's CPU LRN kernels exist for float32/float16 only, and the
    squared sum loses too much precision in bfloat16.
    """

    def __init__(self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        outputs = tf.nn.lrn(
            tf.cast(inputs, tf.float32),
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )
        return tf.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package="keras_cnn")
class Maxout(keras.layers.Layer):
    """Maxout units (Goodfellow et al. 2013): the max over groups of `num_pieces` channels.

    The layer before it must produce units * num_pieces channels; builders ask
    `width_multiplier(activation)` for that factor.
    """

    def __init__(self, num_pieces=2, **kwargs):
        super().__init__(**kwargs)
        self.num_pieces = num_pieces

    def call(self, inputs):
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        grouped = tf.reshape(inputs, tf.concat([shape[:-1], [channels // self.num_pieces, self.num_pieces]], 0))
        return tf.reduce_max(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.num_pieces)

    def get_config(self):
        return {**super().get_config(), "num_pieces": self.num_pieces}


@keras.saving.register_keras_serializable(package="keras_cnn")
class NoisyReLU(keras.layers.Layer):
    """Noisy rectified linear units (Nair & Hinton 2010): max(0, x + N(0, sigmoid(x))) while training,
    max(0, x) at inference. The noise's seed generator is a model variable, so a resumed run draws
    the same noise."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if training:
            x = tf.cast(inputs, tf.float32)
            noise = keras.random.normal(tf.shape(x), seed=self.seed_generator) * tf.sqrt(tf.sigmoid(x))
            return tf.cast(tf.nn.relu(x + noise), inputs.dtype)
        return tf.nn.relu(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_cnn")
class ZeroPadShortcut(keras.layers.Layer):
    """ResNet option-A shortcut (He et al. 2015, section 4.2): subsample, zero-pad channels.

    Parameter-free, which is why the paper's CIFAR ResNet-20 has 0.27M parameters.
    """

    def __init__(self, filters, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.stride = stride

    def call(self, inputs):
        x = inputs[:, :: self.stride, :: self.stride, :]
        extra = self.filters - inputs.shape[-1]
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def shrink(n):
            return None if n is None else (n + self.stride - 1) // self.stride

        return (batch, shrink(height), shrink(width), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@keras.saving.register_keras_serializable(package="keras_cnn")
class IdentityInit(keras.initializers.Initializer):
    """Identity for dense kernels and the conv 'delta' (centre tap = identity) for conv kernels.

    Keras's own Identity initializer only takes 2-D shapes; conv nets need the delta form
    (the identity-initialised nets of Le et al. 2015).
    """

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        kernel = np.zeros(shape, dtype="float32")
        eye = np.eye(shape[-2], shape[-1], dtype="float32") * self.gain
        if len(shape) == 2:
            kernel[:] = eye
        else:
            centre = tuple(k // 2 for k in shape[:-2])
            kernel[centre] = eye
        return tf.constant(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"gain": self.gain}


def logits_dtype():
    """float32 logits under mixed precision (stable softmax), else the global policy (float64 for gradient checks)."""
    policy = keras.mixed_precision.global_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else policy.name


ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "maxout", "noisy_relu")
MAXOUT_PIECES = 2
DECAY_SCOPES = ("all", "dense")

# What init_scale sets, per initializer (None keeps the default in brackets).
INITIALIZERS = {
    "zeros": lambda s: keras.initializers.Zeros(),
    "constant": lambda s: keras.initializers.Constant(0.1 if s is None else s),  # the value [0.1]
    "random_normal": lambda s: keras.initializers.RandomNormal(stddev=s or 0.01),  # stddev [0.01]: "small random"
    "truncated_normal": lambda s: keras.initializers.TruncatedNormal(
        stddev=s or 0.05
    ),  # stddev [0.05]: the TF tutorial
    "uniform": lambda s: keras.initializers.RandomUniform(-(s or 0.05), s or 0.05),  # the limit [0.05]
    # Variance scaling: init_scale multiplies the variance [1].
    "glorot_uniform": lambda s: keras.initializers.VarianceScaling(s or 1.0, "fan_avg", "uniform"),  # Xavier
    "lecun_normal": lambda s: keras.initializers.VarianceScaling(s or 1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": lambda s: keras.initializers.VarianceScaling(s or 1.0, "fan_in", "uniform"),  # neon's "Xavier"
    "he_normal": lambda s: keras.initializers.VarianceScaling(
        2.0 * (s or 1.0), "fan_in", "truncated_normal"
    ),  # Kaiming
    "orthogonal": lambda s: keras.initializers.Orthogonal(gain=s or 1.0),  # the gain [1]
    "identity": lambda s: IdentityInit(gain=s or 1.0),  # the gain [1]
}


def initializer(name, scale=None):
    """Kernel initializer by name (the CS231n lecture 6 and neon comparison sets), scaled by `scale`."""
    return INITIALIZERS[choose("kernel initializer", name, INITIALIZERS)](scale)


def width_multiplier(activation):
    """How many pre-activation channels one output channel needs (maxout takes a max of several)."""
    return MAXOUT_PIECES if activation == "maxout" else 1


def apply_activation(x, activation, name):
    """Apply an activation by name as a named layer, so summaries and statistics can find it."""
    choose("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return keras.layers.ReLU(name=name)(x)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, name=name)(x)
    if activation == "prelu":
        # One slope per channel, shared over space, as in He et al. 2015 (PReLU paper).
        shared = list(range(1, len(x.shape) - 1)) or None
        return keras.layers.PReLU(shared_axes=shared, name=name)(x)
    if activation == "maxout":
        return Maxout(MAXOUT_PIECES, name=name)(x)
    if activation == "noisy_relu":
        return NoisyReLU(name=name)(x)
    return keras.layers.Activation(activation, name=name)(x)


def regularizer(weight_decay):
    """L2 kernel regularization equal to SGD weight decay `weight_decay` (gradient += wd * w).

    Keras's L2(l) adds l * sum(w^2) to the loss, whose gradient is 2 l w: hence wd / 2,
    so `weight_decay=5e-4` here trains like PyTorch's `SGD(weight_decay=5e-4)`.
    """
    if weight_decay < 0:
        raise UsageError(f"weight_decay must be >= 0, got {weight_decay}")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


# The options every family shares: one field each in LayerOptions, with its default, rule and --help line.
def _spec(help: str, rule: Rule = None, fed_by: str | None = None) -> dict[str, Spec]:
    return {"spec": Spec(help, rule, fed_by)}


@dataclasses.dataclass(frozen=True)
class LayerOptions:
    """The shared options of one model, and the convolution, dense, normalization and classifier
    layers built with them, so every family initializes and regularizes alike.

    decay_scope: "all" puts weight decay on every kernel; "dense" only on the hidden fully
    connected layers (the TF CIFAR-10 tutorial's 0.004 on local3/local4; convolutions and
    the classifier undecayed). bias_init: a constant for hidden biases (CS231n's 0.01 for
    ReLU units; the tutorial's 0.1); the classifier's bias starts at 0.
    """

    activation: str = dataclasses.field(default="relu", metadata=_spec(", ".join(ACTIVATIONS), ACTIVATIONS))
    kernel_initializer: str = dataclasses.field(
        default="glorot_uniform", metadata=_spec(", ".join(INITIALIZERS), tuple(INITIALIZERS))
    )
    init_scale: float | None = dataclasses.field(
        default=None,
        metadata=_spec(
            "the initializer's stddev (random/truncated normal), limit (uniform), gain, or variance factor", "rate?"
        ),
    )
    bias_init: float = dataclasses.field(
        default=0.0, metadata=_spec("constant for hidden biases, e.g. 0.01 for ReLU units")
    )
    dropout: float = dataclasses.field(default=0.0, metadata=_spec("dropout rate in [0, 1)", "fraction"))
    weight_decay: float = dataclasses.field(
        default=0.0,
        metadata=_spec("L2 weight decay (SGD-style coefficient)", "nonneg", fed_by="optimizer.weight_decay"),
    )
    decay_scope: str = dataclasses.field(
        default="all",
        metadata=_spec("all (every kernel, default) or dense (the hidden fully connected layers only)", DECAY_SCOPES),
    )
    batch_norm: bool = dataclasses.field(default=False, metadata=_spec("batch normalization"))

    def __post_init__(self) -> None:
        for name, option in shared_options().items():
            option.check(getattr(self, name), name)

    @property
    def widen(self) -> int:
        return width_multiplier(self.activation)

    def _kernel(self, dense: bool) -> dict[str, Any]:
        decayed = self.decay_scope == "all" or dense
        return {
            "kernel_initializer": initializer(self.kernel_initializer, self.init_scale),
            "kernel_regularizer": regularizer(self.weight_decay) if decayed else None,
        }

    def _bias(self) -> Any:
        return keras.initializers.Constant(self.bias_init) if self.bias_init else "zeros"

    def conv(self, x, filters, size, name, *, strides=1, padding="same", bias=None):
        """A convolution (no bias under BatchNorm: BN's beta makes it redundant)."""
        use_bias = not self.batch_norm if bias is None else bias
        return Conv2D(
            filters,
            size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            bias_initializer=self._bias(),
            name=name,
            **self._kernel(dense=False),
        )(x)

    def dense(self, x, units, name, *, bias=None):
        """A hidden fully connected layer (no bias when BatchNorm follows it: bias=None)."""
        use_bias = not self.batch_norm if bias is None else bias
        return keras.layers.Dense(
            units, use_bias=use_bias, bias_initializer=self._bias(), name=name, **self._kernel(dense=True)
        )(x)

    def norm(self, x, name):
        """BatchNorm with torch's defaults (momentum 0.9 here = 0.1 there, eps 1e-5) when enabled."""
        return BatchNorm(momentum=0.9, epsilon=1e-5, name=name)(x) if self.batch_norm else x

    def act(self, x, name, activation=None):
        return apply_activation(x, activation or self.activation, name)

    def drop(self, x, name, rate=None):
        rate = self.dropout if rate is None else rate
        return keras.layers.Dropout(rate, name=name)(x) if rate else x

    def logits(self, x, num_classes, name="logits", use_bias=True):
        """The classifier every model ends with: float32 logits (no softmax), decayed unless scope is dense."""
        return keras.layers.Dense(
            num_classes,
            use_bias=use_bias,
            kernel_initializer=initializer(self.kernel_initializer, self.init_scale),
            kernel_regularizer=regularizer(self.weight_decay) if self.decay_scope == "all" else None,
            dtype=logits_dtype(),
            name=name,
        )(x)


def shared_options(*, only: tuple[str, ...] | None = None, **defaults: Any) -> dict[str, Option]:
    """The shared options a family registers (all, or `only` some), with the family's own defaults."""
    fields = {f.name: f for f in dataclasses.fields(LayerOptions)}
    unknown = set(defaults) - set(fields)
    if unknown:
        raise ValueError(f"not shared options: {sorted(unknown)}")
    hints = typing.get_type_hints(LayerOptions)
    return {
        name: Option(name, hints[name], defaults.get(name, fields[name].default), fields[name].metadata["spec"])
        for name in (only or fields)
    }
