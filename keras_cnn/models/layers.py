"""Custom layers and the activation / initializer lookups every model family shares."""
import keras
import numpy as np
import tensorflow as tf

from keras_cnn.errors import UsageError, choose


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
        grouped = tf.reshape(
            inputs, tf.concat([shape[:-1], [channels // self.num_pieces, self.num_pieces]], 0)
        )
        return tf.reduce_max(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.num_pieces)

    def get_config(self):
        return {**super().get_config(), "num_pieces": self.num_pieces}


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


@keras.saving.register_keras_serializable(package="keras_cnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization computed by TensorFlow's fused kernel (Ioffe & Szegedy 2015).

    Same variables, arguments and semantics as keras.layers.BatchNormalization (biased batch
    variance in the moving average), but one FusedBatchNormV3 op forward and one backward,
    which oneDNN runs natively in bfloat16 with float32 statistics. Keras 3's own layer
    composes moments, casts and arithmetic from a dozen small ops; on the 2-core CPU here
    that made ResNet-20 training 1.55x (float32) to 1.8x (bfloat16) slower. Synchronized
    (multi-replica), renorm, masked, float64 and non-4-D cases use the Keras path unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (self.synchronized or self.renorm or mask is not None or rank != 4 or self.axis not in (-1, rank - 1)
                or inputs.dtype == tf.float64):  # no float64 fused kernel (gradient checks run in float64)
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma.value, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta.value, tf.float32) if self.center else tf.zeros([channels])
        if training and self.trainable:
            outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )
            # The kernel returns the unbiased (Bessel-corrected) variance; Keras averages the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=self.moving_mean.value, variance=self.moving_variance.value,
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )
        return outputs


# Where the bfloat16 kernel gradient is computed as a forward convolution (see Conv2D): at most
# this many output pixels per image and at least this many kernel channel pairs (c_in * c_out).
SWAPPED_FILTER_GRAD_MAX_PIXELS = 64
SWAPPED_FILTER_GRAD_MIN_CHANNEL_PAIRS = 64 * 128


@keras.saving.register_keras_serializable(package="keras_cnn")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose bfloat16 kernel gradient runs on the fast forward-convolution kernel.

    Same variables, arguments, outputs and input gradient as Keras's layer; only how the
    kernel gradient of deep layers on small feature maps is computed changes (at most 8x8
    output pixels and at least 64 x 128 channel pairs: VGG's blocks 3-5, the last stages of
    ResNet-9/18/34). There TensorFlow 2.21's oneDNN (3.7) runs the bfloat16 weight-gradient
    convolution on its older `jit_bf16` kernel on AVX512-BF16 CPUs, at 70-270 GFLOP/s against
    370-460 for the forward and input-gradient convolutions. The kernel gradient is itself a
    convolution, of the input with the output gradient with batch and channels swapped, so
    it can run on the forward kernel instead: 1.4x-3.7x faster on those shapes, but up to 4.6x
    slower on larger feature maps (docs/performance.md has the measurements). float32 and
    float64 keep TensorFlow's own gradient.
    """

    def convolution_op(self, inputs, kernel):
        if not self._swapped_filter_grad(inputs):
            return super().convolution_op(inputs, kernel)
        return conv2d_with_swapped_filter_grad(inputs, tf.cast(kernel, inputs.dtype), self.padding)

    def _swapped_filter_grad(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        return (
            inputs.dtype == tf.bfloat16
            and keras.backend.backend() == "tensorflow"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and height is not None
            and width is not None
            and height * width <= SWAPPED_FILTER_GRAD_MAX_PIXELS
            and inputs.shape[-1] is not None
            and inputs.shape[-1] * self.filters >= SWAPPED_FILTER_GRAD_MIN_CHANNEL_PAIRS
        )


def conv2d_with_swapped_filter_grad(x, kernel, padding):
    """A stride-1 NHWC convolution whose kernel gradient is filter_grad_as_conv (see Conv2D)."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    pad = padding.upper()

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1], padding=pad
            )
            return dx, filter_grad_as_conv(x, dy, kh, kw, padding)

        return tf.nn.conv2d(x, kernel, strides=1, padding=pad), grad

    return conv(x, kernel)


def filter_grad_as_conv(x, dy, kh, kw, padding):
    """dL/dkernel of a stride-1 NHWC convolution, computed as one forward convolution.

    dK[i, j, c, o] = sum_{n, y, x} xpad[n, y + i, x + j, c] * dy[n, y, x, o]: a VALID
    convolution of xpad seen as C_in images of N channels (C, H, W, N) with dy seen as an
    out_h x out_w filter from N to C_out channels (H, W, N, C_out); its 'image' output
    (C_in, kh, kw, C_out) is the kernel gradient up to a transpose.
    """
    if padding == "same":  # TensorFlow's SAME: the extra row/column of an even kernel goes bottom/right
        top, left = (kh - 1) // 2, (kw - 1) // 2
        spatial = [[top, kh - 1 - top], [left, kw - 1 - left]]
    else:
        spatial = [[0, 0], [0, 0]]
    images = tf.transpose(x, [3, 1, 2, 0])
    filters = tf.transpose(dy, [1, 2, 0, 3])
    grad = tf.nn.conv2d(images, filters, strides=1, padding=[[0, 0], *spatial, [0, 0]])
    return tf.transpose(grad, [1, 2, 0, 3])


def logits_dtype():
    """float32 logits under mixed precision (stable softmax), else the global policy (float64 for gradient checks)."""
    policy = keras.mixed_precision.global_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else policy.name


def logits_layer(num_classes, kernel_initializer, weight_decay, name="logits"):
    """The classifier every model ends with: a dense layer giving float32 logits (no softmax)."""
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=initializer(kernel_initializer),
        kernel_regularizer=regularizer(weight_decay),
        dtype=logits_dtype(),
        name=name,
    )


def make_batch_norm(name):
    """The BN every model uses: torch's defaults (momentum 0.9 here = 0.1 there, eps 1e-5)."""
    return BatchNorm(momentum=0.9, epsilon=1e-5, name=name)


ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "maxout")
MAXOUT_PIECES = 2


def initializer(name):
    """Kernel initializer by name (the CS231n lecture 6 comparison set)."""
    table = {
        "zeros": lambda: keras.initializers.Zeros(),
        "constant": lambda: keras.initializers.Constant(0.1),
        "random_normal": lambda: keras.initializers.RandomNormal(stddev=0.01),  # "small random"
        "uniform": lambda: keras.initializers.RandomUniform(-0.05, 0.05),
        "glorot_uniform": lambda: keras.initializers.GlorotUniform(),  # Xavier
        "lecun_normal": lambda: keras.initializers.LecunNormal(),
        "he_normal": lambda: keras.initializers.HeNormal(),  # Kaiming
        "orthogonal": lambda: keras.initializers.Orthogonal(),
        "identity": lambda: IdentityInit(),
    }
    return table[choose("kernel initializer", name, table)]()


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
    return keras.layers.Activation(activation, name=name)(x)


def regularizer(weight_decay):
    """L2 kernel regularization equal to SGD weight decay `weight_decay` (gradient += wd * w).

    Keras's L2(l) adds l * sum(w^2) to the loss, whose gradient is 2 l w: hence wd / 2,
    so `weight_decay=5e-4` here trains like PyTorch's `SGD(weight_decay=5e-4)`.
    """
    if weight_decay < 0:
        raise UsageError(f"weight_decay must be >= 0, got {weight_decay}")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def check_rate(name, value):
    if not 0.0 <= value < 1.0:
        raise UsageError(f"{name} must be in [0, 1), got {value}")
    return value
