"""Conv2D whose bfloat16 kernel gradient runs on the forward-convolution kernel, where that wins."""

import functools

import keras
import tensorflow as tf

from keras_cnn import hardware
from keras_cnn.kernels.switch import enabled

# Where the swap applies (the shapes where it was measured to win; docs/performance.md): at most
# this many output pixels per image and at least this many kernel channel pairs (c_in * c_out).
SWAPPED_FILTER_GRAD_MAX_PIXELS = 64
SWAPPED_FILTER_GRAD_MIN_CHANNEL_PAIRS = 64 * 128
# None: decide by the hardware (swap_measured_here); tests set True/False to force a path.
FORCE_SWAP = None


@functools.cache
def swap_measured_here():
    """Only on the hardware where the swap was measured to win: a CPU with AVX512-BF16 and no
    AMX, with no GPU in use. Unmeasured on AMX CPUs and GPUs, so their own kernels run there."""
    return (
        hardware.cpu_flags().issuperset({"avx512_bf16"})
        and not hardware.cpu_has_amx()
        and not hardware.gpu_capabilities()
    )


@keras.saving.register_keras_serializable(package="keras_cnn")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D with the bfloat16 kernel gradient of deep layers on small maps computed
    as a forward convolution (input and output gradient with batch and channels swapped).

    Same variables, arguments, outputs and input gradient as Keras's layer. Why: TensorFlow 2.21's
    oneDNN runs the bfloat16 weight-gradient convolution on an older, slower kernel on
    AVX512-BF16 CPUs, while the forward convolution has a fast one; on larger maps the swap loses,
    so it applies only to <= 8x8 output maps with >= 64 x 128 channel pairs (VGG blocks 3-5).
    """

    def convolution_op(self, inputs, kernel):
        if not self._swapped_filter_grad(inputs):
            return super().convolution_op(inputs, kernel)
        return conv2d_with_swapped_filter_grad(inputs, tf.cast(kernel, inputs.dtype), self.padding)

    def _swapped_filter_grad(self, inputs):
        wanted = swap_measured_here() if FORCE_SWAP is None else FORCE_SWAP
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[-1]
        return (
            wanted
            and enabled()
            and inputs.dtype == tf.bfloat16
            and keras.backend.backend() == "tensorflow"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and None not in (height, width, channels)
            and height * width <= SWAPPED_FILTER_GRAD_MAX_PIXELS
            and channels * self.filters >= SWAPPED_FILTER_GRAD_MIN_CHANNEL_PAIRS
        )


def conv2d_with_swapped_filter_grad(x, kernel, padding):
    """A stride-1 NHWC convolution whose kernel gradient is filter_grad_as_conv."""
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
