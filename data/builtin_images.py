"""Offline natural images, no download: square crops of the two sample photos that
scikit-learn ships (china.jpg, flower.jpg, 427x640 RGB).

Crop i of a split is drawn from np.random.default_rng((seed, i)): a practically
unlimited, deterministic source. 'train' crops come from the top 80% of each
photo's rows, 'valid'/'test' crops from the bottom 20%, so they never overlap.
Good for smoke tests and the quick run, not for judging generalisation.
"""
from __future__ import annotations

import functools

import numpy as np

_SPLIT_ROWS = 0.8


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
  from sklearn.datasets import load_sample_images
  return tuple(np.asarray(im, np.uint8) for im in load_sample_images().images)


class Crops:

  def __init__(self, split: str, size: int, num: int, seed: int = 0):
    self.split, self.size, self.num, self.seed = split, size, num, seed

  def __len__(self):
    return self.num

  def __getitem__(self, i):
    rng = np.random.default_rng((self.seed, 0 if self.split == 'train' else 1, int(i)))
    photo = _photos()[int(rng.integers(len(_photos())))]
    cut = int(photo.shape[0] * _SPLIT_ROWS)
    lo, hi = (0, cut - self.size) if self.split == 'train' else (cut, photo.shape[0] - self.size)
    r, c = int(rng.integers(lo, hi + 1)), int(rng.integers(0, photo.shape[1] - self.size + 1))
    return photo[r:r + self.size, c:c + self.size]
