"""tf.data input pipelines over in-memory uint8 arrays.

    ds = make_dataset(split, cfg.data, training=True, seed=0, epoch=3, normalizer=norm)

One epoch per call: the order is a stateless shuffle keyed on (seed, epoch), so a run
resumed at epoch 3 sees exactly the batches the uninterrupted run saw.
"""
import tensorflow as tf

from keras_cnn.data import augment


def make_dataset(split, cfg, *, training, seed=0, epoch=0, normalizer=None, input_context=None, start_batch=0):
    """One epoch of (float32 images, int32 labels) batches from an ArraySplit.

    Order of operations, and why:
    - shuffle indices, not images: a permutation of ints costs nothing, the images stay put;
    - shard after shuffling (same seed on every worker), so shards are disjoint and random;
    - batch before gathering and augmenting: one vectorized gather/crop/flip per batch is far
      cheaper than per-image map calls;
    - augment in uint8, normalize to float32 last, cutout after normalization (hole = mean);
    - prefetch so the next batch is ready while the model trains on this one.
    """
    images, labels = _as_tensors(split)
    batch_size = cfg.batch_size
    indices = tf.range(len(split), dtype=tf.int32)
    if training:
        indices = tf.random.experimental.stateless_shuffle(indices, seed=[seed, epoch])
    ds = tf.data.Dataset.from_tensor_slices(indices)
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    # Training drops the ragged last batch so every step has the same shape (one graph).
    ds = ds.batch(batch_size, drop_remainder=training)

    def load(step, batch_indices):
        x = tf.gather(images, batch_indices)
        y = tf.gather(labels, batch_indices)
        if training:
            crop_seed, cutout_seed = tf.unstack(
                tf.random.experimental.stateless_split(tf.stack([seed * 100003 + epoch, step]), 2)
            )
            x = augment.crop_and_flip(x, cfg.crop_padding, cfg.flip, crop_seed)
        x = normalizer(x) if normalizer is not None else tf.cast(x, tf.float32) / 255.0
        if training:
            x = augment.cutout(x, cfg.cutout, cutout_seed)
        return x, y

    # Resuming mid-epoch skips batches before they are loaded; enumerate first so the
    # augmentation seeds of the remaining batches are the ones they always had.
    ds = ds.enumerate().skip(start_batch).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _as_tensors(split):
    # Converted once per split and kept: an epoch's dataset then captures the same tensors.
    cached = getattr(split, "_tensors", None)
    if cached is None:
        with tf.device("/CPU:0"):
            cached = (tf.constant(split.images), tf.constant(split.labels, tf.int32))
        split._tensors = cached
    return cached
