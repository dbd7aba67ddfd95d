"""Batched, stateless augmentation: random crop with padding, horizontal flip, cutout, random-resized
crops and center crops at any resolution, and the TF CIFAR-10 tutorial's distortions.

Whole batches at once (no per-image Python or map calls), and every random draw is keyed
on an explicit seed tensor, so a resumed run repeats the same augmentations.
"""

import math

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


def random_resized_crop(images, scale, ratio, seed):
    """Inception-style crops (Szegedy et al. 2015; torchvision's RandomResizedCrop): per image a box of
    area fraction in `scale` and aspect ratio in `ratio` (log-uniform), resized back to the batch's size.

    Whole batches at once (tf.image.crop_and_resize with one box per image); a box that would not fit
    is clipped to the image. uint8 in, uint8 out.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    area_seed, ratio_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    area = tf.random.stateless_uniform([batch], area_seed, scale[0], scale[1])
    log_ratio = tf.random.stateless_uniform([batch], ratio_seed, math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    h = tf.minimum(tf.sqrt(area / aspect), 1.0)  # normalized: fractions of the image's height and width
    w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    y0 = tf.random.stateless_uniform([batch], y_seed) * (1.0 - h)
    x0 = tf.random.stateless_uniform([batch], x_seed) * (1.0 - w)
    boxes = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
    return _crop_and_resize(images, boxes, (height, width))


def center_crop(images, fraction):
    """The central `fraction` of each image (side), resized back to the batch's size; 1.0 is a no-op.
    Evaluation and the serving graph both call this, so they compute the same pixels."""
    if fraction >= 1.0:
        return images
    height, width = images.shape[1], images.shape[2]
    top, left = int(round(height * (1 - fraction) / 2)), int(round(width * (1 - fraction) / 2))
    window = images[:, top : height - top, left : width - left, :]
    resized = tf.image.resize(tf.cast(window, tf.float32), (height, width), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _crop_and_resize(images, boxes, size):
    out = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(tf.shape(images)[0]), size, method="bilinear"
    )
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def random_crop(images, size, seed):
    """A random size x size window per image (the TF CIFAR-10 tutorial's 24x24 crops), as index gathers."""
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    spans = tf.constant([height - size + 1, width - size + 1], tf.float32)
    offsets = tf.cast(tf.random.stateless_uniform([batch, 2], seed) * spans, tf.int32)
    rows = offsets[:, :1] + tf.range(size)[None, :]
    cols = offsets[:, 1:] + tf.range(size)[None, :]
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def central_crop(images, size):
    top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
    return images[:, top : top + size, left : left + size, :]


def brightness_contrast(images, seed, max_delta=63.0, contrast=(0.2, 1.8)):
    """The tutorial's photometric distortions on float pixels (0..255): a random brightness shift and a
    random contrast factor per image (tf.image.random_brightness / random_contrast, batched)."""
    batch = tf.shape(images)[0]
    b_seed, c_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    delta = tf.random.stateless_uniform([batch, 1, 1, 1], b_seed, -max_delta, max_delta)
    factor = tf.random.stateless_uniform([batch, 1, 1, 1], c_seed, contrast[0], contrast[1])
    shifted = images + delta
    mean = tf.reduce_mean(shifted, axis=[1, 2, 3], keepdims=True)  # random_contrast: about the image's mean
    return (shifted - mean) * factor + mean


def geometric(images, cfg, training, seed):
    """The shape-changing part of an augmentation, on uint8 batches; the evaluation form when not training."""
    if cfg.augmentation == "tf_tutorial":
        if not training:
            return central_crop(images, cfg.crop_size)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        return crop_and_flip(random_crop(images, cfg.crop_size, crop_seed), 0, cfg.flip, flip_seed)
    if cfg.augmentation == "random_resized_crop":
        if not training:
            return center_crop(images, cfg.eval_crop)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        return crop_and_flip(
            random_resized_crop(images, cfg.crop_scale, cfg.crop_ratio, crop_seed), 0, cfg.flip, flip_seed
        )
    return crop_and_flip(images, cfg.crop_padding, cfg.flip, seed) if training else images
