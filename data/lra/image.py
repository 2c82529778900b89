"""LRA Image: CIFAR-10 in greyscale, 1024 tokens of 0-255 (no padding), 10 classes.

From the project's CIFAR-10 readers (the python archive or TFDS, data/cifar10.py). Grey is
0.2989 R + 0.5870 G + 0.1140 B scaled back to 0-255 the way tf.image.rgb_to_grayscale and
convert_image_dtype do it in the LRA pipeline (x / 255, weighted, x 255.5, truncated).
LRA's split: train = the first 90 % of the training images, valid = the last 10 %, test =
the test batch.
"""
from __future__ import annotations

import numpy as np

from data.cifar10 import TfdsImages, read_cifar10_archive
from data.lra import Examples

WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)
TRAIN_FRACTION = 0.9


def grey(images: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> int32 [...] in 0..255."""
  y = (np.asarray(images, np.float32) / 255.0) @ WEIGHTS
  return np.minimum(np.floor(y * 255.5), 255).astype(np.int32)


def read(cfg, split: str) -> Examples:
  """cfg: config.data (format 'archive' with path, or 'tfds' with tfds_data_dir)."""
  source = 'test' if split == 'test' else 'train'
  if cfg.format == 'archive':
    images, labels = read_cifar10_archive(cfg.path, source)
  elif cfg.format == 'tfds':
    ds = TfdsImages('cifar10', source, cfg.tfds_data_dir)
    images = np.stack([ds[i] for i in range(len(ds))])
    labels = np.array([int(ds.source[i]['label']) for i in range(len(ds))])
  else:
    raise ValueError(f"data.format must be 'archive' or 'tfds' for the image task, got "
                     f'{cfg.format!r}')
  if split != 'test':
    cut = int(TRAIN_FRACTION * len(images))
    rows = slice(0, cut) if split == 'train' else slice(cut, None)
    images, labels = images[rows], labels[rows]
  tokens = grey(images).reshape(len(images), -1)
  return Examples(tokens, labels, lambda t: t)
