"""tf.data input pipelines, one shape for every split: indices -> uint8 batches -> augment -> normalize.

    ds = make_dataset(split, cfg.data, training=True, seed=0, epoch=3, normalizer=norm)

One epoch per call: the order is a stateless shuffle keyed on (seed, epoch), so a run resumed at
epoch 3, batch 40 sees exactly the batches the uninterrupted run saw. Where a batch's uint8 images
come from depends on the split (data/splits.py): a gather from memory, a read from a memory-mapped
file, decoding files in parallel, or reading TFRecord shards (data/records.py); the augmentation and
normalization after that are the same for all of them.
"""

import numpy as np
import tensorflow as tf

from keras_cnn.data import augment, records
from keras_cnn.data.decode import as_written, decode_image, decode_random_crop
from keras_cnn.data.splits import FileSplit, MappedSplit
from keras_cnn.errors import UsageError


def make_dataset(split, cfg, *, training, seed=0, epoch=0, normalizer=None, input_context=None, start_batch=0):
    """One epoch of (float32 images, int32 labels) batches.

    Order of operations, and why:
    - shuffle indices, not images: a permutation of ints costs nothing, the images stay put;
    - shard after shuffling (same seed on every worker), so shards are disjoint and random, and
      skip a resumed epoch's first batches as indices, before any image is read;
    - load whole batches (one vectorized gather) where images are in memory; decode files
      element-wise in parallel where they are not;
    - augment whole batches in uint8 (crops, flips), normalize to float32 last, cutout after
      normalization (the hole is then the mean);
    - prefetch so the next batch is ready while the model trains on this one.
    """
    batch_size = input_context.get_per_replica_batch_size(cfg.batch_size) if input_context else cfg.batch_size
    # Streamed crops are cut while decoding (training: only the window of a JPEG is decoded; evaluation:
    # the same center crop the serving graph applies, image by image).
    fused = cfg.augmentation == "random_resized_crop" and isinstance(split, (FileSplit, records.RecordSplit))
    decoder = element_decoder(split, cfg, seed, epoch, fused, training)
    if isinstance(split, records.RecordSplit):
        ds = records.record_batches(
            split,
            batch_size,
            training=training,
            seed=seed,
            epoch=epoch,
            input_context=input_context,
            start_batch=start_batch,
            decoder=decoder,
        )
    else:
        ds = _index_batches(split, batch_size, training, seed, epoch, input_context, start_batch, decoder)
    ds = ds.enumerate(start=start_batch)  # the batch's number in the epoch keys its augmentation

    def finish(step, batch):
        images, labels = batch
        step_seed = tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), step])
        crop_seed, photo_seed, cutout_seed = tf.unstack(tf.random.experimental.stateless_split(step_seed, 3))
        x = images if fused else augment.geometric(images, cfg, training, crop_seed)
        x = tf.cast(x, tf.float32)
        if training and cfg.augmentation == "tf_tutorial":
            x = augment.brightness_contrast(x, photo_seed)
        x = normalizer(x) if normalizer is not None else x / 255.0
        if training:
            x = augment.cutout(x, cfg.cutout, cutout_seed)
        return x, labels

    ds = ds.map(as_written(finish), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cfg.service and training:
        ds = on_service(
            ds, cfg.service, split, f"keras_cnn-{seed}-{epoch}-{getattr(input_context, 'input_pipeline_id', 0)}"
        )
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if not training and not isinstance(split, (FileSplit, records.RecordSplit)):
        ds = ds.with_options(IN_MEMORY_EVALUATION)
    return ds


# An evaluation pass over images already in memory has nothing to tune, and tf.data's autotuner
# sometimes left resnet20's validation at ~1,950 img/s against ~3,000 without it (the model and the
# pipeline share two cores; docs/performance.md). Parallel calls then use every core.
IN_MEMORY_EVALUATION = tf.data.Options()
IN_MEMORY_EVALUATION.autotune.enabled = False


def on_service(ds, address, split, job_name):
    """Run the pipeline on tf.data service workers, as one distributed epoch: each element is produced
    once across the workers (the order is theirs, so a resumed epoch is not replayed exactly)."""
    if not isinstance(split, (FileSplit, records.RecordSplit)):
        raise UsageError(
            "--data-service needs a streamed dataset: pass --set data.cache=none, or prepared shards "
            "(scripts/prepare.py); an in-memory set would travel inside the dataset's graph"
        )
    return ds.apply(
        tf.data.experimental.service.distribute(processing_mode="distributed_epoch", service=address, job_name=job_name)
    )


def element_decoder(split, cfg, seed, epoch, fused, training=True):
    """decode(contents, index) -> uint8 image at the split's size, for streamed splits."""
    if not fused:
        return lambda contents, index: decode_image(contents, split.channels, split.size)
    if not training:
        return lambda contents, index: augment.center_crop(
            decode_image(contents, split.channels, split.size)[None], cfg.eval_crop
        )[0]

    def decode(contents, index):
        image_seed = tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), tf.cast(index, tf.int64)])
        return decode_random_crop(
            contents, split.channels, split.size, image_seed, cfg.crop_scale, cfg.crop_ratio, cfg.flip
        )

    return decode


def _index_batches(split, batch_size, training, seed, epoch, input_context, start_batch, decoder):
    indices = tf.range(len(split), dtype=tf.int32)
    if training:
        indices = tf.random.experimental.stateless_shuffle(indices, seed=[seed, epoch])
    ds = tf.data.Dataset.from_tensor_slices(indices)
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.skip(start_batch * batch_size)
    if isinstance(split, FileSplit):
        share = len(split) // (input_context.num_input_pipelines if input_context else 1) - start_batch * batch_size
        return _decoded(ds, split, batch_size, training, decoder, share)
    # Training drops the ragged last batch so every step has the same shape (one graph).
    ds = ds.batch(batch_size, drop_remainder=training)
    if isinstance(split, MappedSplit):
        shape = split.image_shape

        def read(batch_indices):
            images = tf.numpy_function(split.gather, [batch_indices], tf.uint8, stateful=False)
            images.set_shape([None, *shape])
            return images, tf.gather(tf.constant(split.labels, tf.int32), batch_indices)

        return ds.map(as_written(read), num_parallel_calls=2, deterministic=True)
    images, labels = _as_tensors(split)
    return ds.map(
        as_written(lambda i: (tf.gather(images, i), tf.gather(labels, i))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _decoded(ds, split, batch_size, training, decoder, share):
    """Files read and decoded in parallel, in order. An undecodable file (its header was fine) is dropped;
    a training epoch then repeats from its start so it still has its full count (`share` images, the
    same on every worker: unequal counts would hang the all-reduce)."""
    paths = tf.constant(split.paths.astype(str))
    labels = tf.constant(split.labels, tf.int32)

    def load(i):
        return decoder(tf.io.read_file(tf.gather(paths, i)), i), tf.gather(labels, i)

    if training:
        ds = ds.repeat()
    ds = ds.map(as_written(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    if training:
        ds = ds.take(max(share, 0))
    return ds.batch(batch_size, drop_remainder=training)


def _as_tensors(split):
    # Converted once per split and kept: an epoch's dataset then captures the same tensors.
    cached = getattr(split, "_tensors", None)
    if cached is None:
        with tf.device("/CPU:0"):
            cached = (tf.constant(split.images), tf.constant(np.asarray(split.labels), tf.int32))
        split._tensors = cached
    return cached


def eval_inputs(images, cfg, normalizer):
    """What the model sees at evaluation for a batch of uint8 images: the evaluation crop, then the
    normalization (the pipeline's own evaluation path; the serving graph applies the same)."""
    x = augment.geometric(tf.convert_to_tensor(images), cfg, False, tf.constant([0, 0], tf.int64))
    return normalizer(tf.cast(x, tf.float32))
