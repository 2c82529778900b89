"""Images as token sequences for autoregressive modelling: raster order over pixels, the
R, G, B sub-pixels as consecutive tokens (H*W*3 tokens, each one of 256 values).

Training: shuffled per epoch, augmented (random horizontal flip, then one random
offset in [-offset, offset] added to every sub-pixel, clipped to [0, 255]; per
element from a seeded generator, so resumed runs see the same batches), batched;
the iterator's state is checkpointable. Evaluation covers every image: the last
batch is padded with masked rows.
"""
from __future__ import annotations

import grain
import numpy as np

from data.lm import _local_rows, eval_rows


def augment(image: np.ndarray, rng: np.random.Generator, max_offset: int) -> np.ndarray:
  if rng.random() < 0.5:
    image = image[:, ::-1]  # horizontal: the width axis of [H, W, 3]
  offset = int(rng.integers(-max_offset, max_offset + 1))
  return np.clip(image.astype(np.int32) + offset, 0, 255)


def to_tokens(image: np.ndarray) -> np.ndarray:
  return np.asarray(image, np.int32).reshape(-1)


def train_dataset(source, global_batch: int, seed: int, max_offset: int):
  if len(source) < global_batch:
    raise ValueError(f'{len(source)} training images, fewer than one batch of {global_batch}')
  first, rows = _local_rows(global_batch)
  ds = (grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
        .random_map(lambda im, rng: to_tokens(augment(im, rng, max_offset)), seed=seed)
        .batch(global_batch).map(lambda b: {'tokens': b[first:first + rows]}))
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def eval_batches(source, global_batch: int, max_batches: int | None = None):
  for idx, real in eval_rows(len(source), global_batch, max_batches):
    tokens = np.stack([to_tokens(source[i]) for i in idx])
    mask = np.repeat(real[:, None], tokens.shape[1], 1).astype(np.float32)
    yield {'tokens': tokens, 'mask': mask}
