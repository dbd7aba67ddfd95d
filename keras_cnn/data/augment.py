"""Batched, stateless augmentation: random crop with padding, horizontal flip, cutout.

Whole batches at once (no per-image Python or map calls), and every random draw is keyed
on an explicit seed tensor, so a resumed run repeats the same augmentations.
"""
import tensorflow as tf


def crop_and_flip(images, padding, flip, seed):
    """Random crop after zero-padding `padding` pixels per side, and random horizontal flip.

    Both are one index gather per axis: the flip reverses the column indices rather than
    the pixels, so a batch is read once whatever is enabled.
    """
    if not padding and not flip:
        return images
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    if flip:
        flipped = tf.random.stateless_uniform([batch, 1], flip_seed) < 0.5
        cols = tf.where(flipped, width - 1 - cols, cols)
    if padding:
        images = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
        offsets = tf.random.stateless_uniform([batch, 2], crop_seed, 0, 2 * padding + 1, tf.int32)
        rows = offsets[:, :1] + rows
        cols = offsets[:, 1:] + cols
        images = tf.gather(images, rows, axis=1, batch_dims=1)
    else:
        cols = tf.broadcast_to(cols, [batch, width])
    return tf.gather(images, cols, axis=2, batch_dims=1)


def cutout(images, size, seed):
    """DeVries & Taylor 2017: zero a size x size square (clipped at the border) per image.

    Applied after normalization, so the hole is the mean colour.
    """
    if not size:
        return images
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    centres = tf.random.stateless_uniform([batch, 2], seed, 0, 1.0)
    cy = tf.cast(centres[:, 0] * height, tf.int32)[:, None]
    cx = tf.cast(centres[:, 1] * width, tf.int32)[:, None]
    ys, xs = tf.range(height)[None, :], tf.range(width)[None, :]
    in_rows = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)
    in_cols = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)
    hole = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return tf.where(hole, tf.zeros_like(images), images)
