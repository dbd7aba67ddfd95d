"""The Trainer: compiled training and evaluation steps, one path for every tf.distribute strategy.

Keras 3's model.fit fails under MultiWorkerMirroredStrategy (a PerReplica value reaches a
tensor conversion), so training is a tf.function around strategy.run: the loss is averaged
over the *global* batch with tf.nn.compute_average_loss and regularization is scaled by the
replica count, so summed gradients equal the single-replica ones.
"""

import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM


class Trainer:
    """Owns the compiled train and eval functions for one model/optimizer under one strategy."""

    def __init__(
        self,
        model,
        optimizer,
        loss_fn,
        strategy,
        *,
        global_batch_size,
        ema=None,
        jit_compile=False,
        class_weights=None,
        multi_label=False,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.multi_label = multi_label  # labels are multi-hot rows; "accuracy" is then the exact-match ratio
        # Per-class loss weights (training.class_weights), for training only: evaluation is unweighted.
        self.class_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)
        self.strategy, self.ema = strategy, ema
        self.global_batch_size = global_batch_size
        self.jit_compile = jit_compile
        self.retrace()
        # The whole pass over the validation set is one graph: per-batch Python calls cost more than
        # small models' evaluation steps.
        self._evaluate = tf.function(self._evaluate_all)

    def retrace(self, scaled_variables=(), multiplier=1.0):
        """New compiled training steps: a traced step keeps the trainable variables of its tracing
        (fine-tuning phases change them). `scaled_variables` take `multiplier` times the update
        the optimizer makes (training.finetune's backbone learning rate)."""
        self._scaled, self._multiplier = list(scaled_variables), multiplier
        self._train = tf.function(self._train_steps)
        self._gradients = (
            tf.function(self._forward_backward, jit_compile=True) if self.jit_compile else self._forward_backward
        )

    # ------------------------------------------------------------------ training

    def _forward_backward(self, images, labels):
        """Forward and backward pass for one replica's batch (XLA-compiled by flag)."""
        model = self.model
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = self.loss_fn(labels, logits)
            if self.class_weights is not None:
                per_example *= tf.gather(self.class_weights, labels)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        correct = tf.reduce_sum(self._hits(logits, labels))
        stats = tf.stack([tf.reduce_sum(per_example), correct, tf.cast(tf.shape(labels)[0], tf.float32)])
        return grads, stats

    def _replica_step(self, images, labels):
        grads, stats = self._gradients(images, labels)
        before = [tf.identity(v.value) for v in self._scaled]
        # Outside any XLA cluster: applying gradients all-reduces them across replicas.
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        # A learning rate times m for these variables: their update, scaled. Exact for every
        # optimizer here, whose update (decoupled weight decay included) is linear in the rate.
        for variable, old in zip(self._scaled, before):
            variable.assign(old + self._multiplier * (variable.value - old))
        return stats

    def _train_steps(self, iterator, num_steps):
        """num_steps optimizer steps in one graph call; returns summed (loss, correct, count)."""
        totals = tf.zeros([3])
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(self._replica_step, args=(images, labels))
            totals += self.strategy.reduce(SUM, per_replica, axis=None)
            if self.ema is not None:
                self.ema.update(self.optimizer.iterations)
        return totals

    def train_steps(self, iterator, num_steps):
        return self._train(iterator, tf.constant(num_steps, tf.int32)).numpy()

    # ---------------------------------------------------------------- evaluation

    def _replica_eval(self, images, labels):
        logits = self.model(images, training=False)
        per_example = self.loss_fn(labels, logits)
        top1, top5 = self._hits(logits, labels), self._top_k_hits(logits, labels, min(5, logits.shape[-1]))
        return tf.stack(
            [
                tf.reduce_sum(per_example),
                tf.reduce_sum(top1),
                tf.reduce_sum(top5),
                tf.cast(tf.shape(labels)[0], tf.float32),
            ]
        )

    def _hits(self, logits, labels):
        """1 per correct image: the top class is the label; multi-label: every class's sigmoid at
        0.5 (logit 0) agrees with the label row."""
        if self.multi_label:
            agree = tf.equal(tf.cast(logits > 0, tf.int32), tf.cast(labels, tf.int32))
            return tf.cast(tf.reduce_all(agree, axis=-1), tf.float32)
        return tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)

    def _top_k_hits(self, logits, labels, k):
        """1 per image whose label is among its k highest scores; multi-label: all its labels are."""
        if self.multi_label:
            kth = tf.math.top_k(tf.cast(logits, tf.float32), k).values[:, -1:]
            covered = tf.logical_or(tf.equal(labels, 0), tf.cast(logits, tf.float32) >= kth)
            return tf.cast(tf.reduce_all(covered, axis=-1), tf.float32)
        return tf.cast(tf.nn.in_top_k(labels, logits, k), tf.float32)

    def _eval_step(self, batch):
        images, labels = batch
        return self.strategy.reduce(SUM, self.strategy.run(self._replica_eval, args=(images, labels)), axis=None)

    def _evaluate_all(self, dataset):
        totals = tf.zeros([4])
        # Over an iterator, not the dataset: AutoGraph turns `for batch in dataset` into a dataset
        # reduce, whose body runs inside tf.data's function runtime with its ops one at a time;
        # over an iterator the model runs in this graph's executor, as training does (resnet20
        # evaluation ~1.5x faster, docs/performance.md).
        for batch in iter(dataset):
            totals += self._eval_step(batch)
        return totals

    def evaluate(self, dataset):
        """Loss, accuracy, top-5 accuracy over a distributed dataset, in one compiled call."""
        loss, top1, top5, count = (float(v) for v in self._evaluate(dataset).numpy())
        count = max(count, 1.0)
        return {"loss": loss / count, "accuracy": top1 / count, "top5_accuracy": top5 / count}
