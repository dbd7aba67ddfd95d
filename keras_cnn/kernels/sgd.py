"""SGD with momentum in one fused op per variable."""

import keras
import tensorflow as tf

from keras_cnn.kernels.switch import enabled


@keras.saving.register_keras_serializable(package="keras_cnn")
class SGD(keras.optimizers.SGD):
    """keras.optimizers.SGD whose (Nesterov) momentum update is TensorFlow's ResourceApplyKerasMomentum.

    The same update (accum = m * accum - lr * g; var += accum, or m * accum - lr * g with
    Nesterov), bit for bit. Why: Keras 3 writes it as about seven elementwise ops per variable,
    each a pass over the weights; the fused op reads and writes them once.
    """

    def update_step(self, gradient, variable, learning_rate):
        if (
            not enabled()
            or self.momentum == 0
            or keras.backend.backend() != "tensorflow"
            or isinstance(gradient, tf.IndexedSlices)
        ):
            return super().update_step(gradient, variable, learning_rate)
        var = variable.value if isinstance(variable, keras.Variable) else variable
        accum = self.momentums[self._get_variable_index(variable)].value
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=var.handle,
            accum=accum.handle,
            lr=tf.cast(learning_rate, var.dtype),
            grad=tf.cast(gradient, var.dtype),
            momentum=tf.cast(self.momentum, var.dtype),
            use_locking=False,
            use_nesterov=self.nesterov,
        )
