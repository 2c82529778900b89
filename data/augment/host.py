"""Per-image geometric augmentations on the host (numpy / PIL), drawn from a numpy Generator."""
from __future__ import annotations

import math

import numpy as np


def random_resized_crop_box(rng: np.random.Generator, size: tuple[int, int],
                            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """(left, top, right, bottom) of a random crop covering `scale` of the area with aspect
  (w/h) log-uniform in `ratio`; after 10 misses, the central crop with the ratio clamped
  (torchvision's RandomResizedCrop.get_params)."""
  width, height = size
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      left = int(rng.integers(0, width - w + 1))
      top = int(rng.integers(0, height - h + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    w, h = int(round(height * max(ratio))), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def maybe_flip(image: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
  """Horizontal flip of uint8 [H, W, 3] with probability p."""
  return np.ascontiguousarray(image[:, ::-1]) if rng.random() < p else image
