"""BatchNormalization on TensorFlow's fused kernel."""

import keras
import tensorflow as tf

from keras_cnn.kernels.switch import enabled


@keras.saving.register_keras_serializable(package="keras_cnn")
class BatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization computed by one FusedBatchNormV3 op (Ioffe & Szegedy 2015).

    Same variables, arguments and semantics (the biased batch variance feeds the moving
    average). Why: Keras 3 composes moments, casts and arithmetic from a dozen small ops,
    each a pass over the activations; the fused op is one pass forward and one backward, and
    oneDNN runs it in bfloat16 with float32 statistics. Synchronized (several replicas),
    renorm, masked, float64 and non-4-D cases use Keras's own path.
    """

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (
            not enabled()
            or self.synchronized
            or self.renorm
            or mask is not None
            or rank != 4
            or self.axis not in (-1, rank - 1)
            or inputs.dtype == tf.float64
        ):  # no float64 fused kernel
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma.value, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta.value, tf.float32) if self.center else tf.zeros([channels])
        if training and self.trainable:
            outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=gamma,
                offset=beta,
                mean=tf.zeros([0]),
                variance=tf.zeros([0]),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            # The kernel returns the unbiased (Bessel-corrected) variance; Keras averages the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=gamma,
                offset=beta,
                mean=self.moving_mean.value,
                variance=self.moving_variance.value,
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        return outputs
