"""Speed kernels, kept apart from the model definitions: each computes what the plain Keras path
computes (tests/test_kernels.py checks it) and changes only how fast.

- `BatchNorm`: keras.layers.BatchNormalization on TensorFlow's fused kernel;
- `Conv2D`: keras.layers.Conv2D whose bfloat16 kernel gradient runs as a forward convolution,
  on the CPUs where that was measured to win;
- `SGD`: keras.optimizers.SGD with the momentum update in one fused op per variable.

One switch turns them all off (the plain Keras computation runs instead; saved models are the
same either way): `KERAS_CNN_FAST_KERNELS=0`, or `keras_cnn.kernels.set_enabled(False)`.
Measured speed-ups are in docs/performance.md.
"""

from keras_cnn.kernels.batch_norm import BatchNorm
from keras_cnn.kernels.conv import Conv2D
from keras_cnn.kernels.sgd import SGD
from keras_cnn.kernels.switch import disabled, enabled, set_enabled

__all__ = ["BatchNorm", "Conv2D", "SGD", "disabled", "enabled", "set_enabled"]
