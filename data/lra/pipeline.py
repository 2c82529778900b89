"""Batches of LRA examples: shuffled per epoch with a fixed seed, resumable (grain), this host's
rows of every global batch; evaluation covers a whole split, the last batch padded with
masked rows (mask [batch], 1 for real examples)."""
from __future__ import annotations

import grain
import numpy as np

from data.lm import _local_rows, eval_rows


def train_dataset(source, global_batch: int, seed: int):
  if len(source) < global_batch:
    raise ValueError(f'{len(source)} training examples, fewer than one batch of {global_batch}')
  first, rows = _local_rows(global_batch)
  ds = (grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
        .batch(global_batch, drop_remainder=True)
        .map(lambda b: {k: v[first:first + rows] for k, v in b.items()}))
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def eval_batches(source, global_batch: int, max_batches: int | None = None):
  for idx, real in eval_rows(len(source), global_batch, max_batches):
    items = [source[i] for i in idx]
    yield {'tokens': np.stack([it['tokens'] for it in items]),
           'label': np.array([it['label'] for it in items], np.int32),
           'mask': real.astype(np.float32)}
