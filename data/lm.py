"""Byte-LM input pipeline: windows of seq_len + 1 bytes, grain for shuffling and resumable iteration.

Training: the split cut into non-overlapping windows (stride seq_len, each
seq_len + 1 long so inputs and targets overlap by one), shuffled per epoch by
grain with a fixed seed, batched, repeated forever. Each host reads its own
slice of every global batch. The iterator's state (a small dict) goes into
every checkpoint, so a resumed run sees the same batches.

Evaluation: every byte after the first is predicted exactly once; the last
window and the last batch are padded and masked, so nothing is dropped.
"""
from __future__ import annotations

import grain
import jax
import numpy as np


class Windows:
  """Random-access source: window i = data[i*stride : i*stride + seq_len + 1]."""

  def __init__(self, data: np.ndarray, seq_len: int):
    if len(data) < seq_len + 1:
      raise ValueError(f'split has {len(data)} bytes, fewer than seq_len + 1 = {seq_len + 1}')
    self.data, self.seq_len = data, seq_len
    self.n = (len(data) - 1) // seq_len

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    start = int(i) * self.seq_len
    return self.data[start:start + self.seq_len + 1].astype(np.int32)


def _local_rows(global_batch: int) -> tuple[int, int]:
  """(first row, row count) of this host's slice of a global batch."""
  n, p = jax.process_count(), jax.process_index()
  if global_batch % n:
    raise ValueError(f'batch_size={global_batch} does not divide over {n} processes')
  return p * (global_batch // n), global_batch // n


def eval_rows(n: int, global_batch: int, max_batches: int | None = None):
  """For each evaluation batch over n examples: this host's example indices (clipped to n - 1,
  so the last batch is full) and which of them are real (the rest are masked out)."""
  first, rows = _local_rows(global_batch)
  n_batches = -(-n // global_batch)
  if max_batches is not None:
    n_batches = min(n_batches, max_batches)
  for b in range(n_batches):
    idx = np.arange(b * global_batch, (b + 1) * global_batch)[first:first + rows]
    yield np.minimum(idx, n - 1), idx < n


def train_dataset(data: np.ndarray, seq_len: int, global_batch: int, seed: int):
  """Infinite iterator of this host's {'tokens': [local_batch, seq_len + 1]} with get/set_state."""
  src = Windows(data, seq_len)
  if len(src) < global_batch:
    raise ValueError(f'the training split has {len(src)} windows of {seq_len + 1} bytes, '
                     f'fewer than one batch of {global_batch}')
  first, rows = _local_rows(global_batch)
  ds = (grain.MapDataset.source(src).shuffle(seed=seed).batch(global_batch, drop_remainder=True)
        .repeat(None).map(lambda b: {'tokens': b[first:first + rows]}))
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def steps_per_epoch(data: np.ndarray, seq_len: int, global_batch: int) -> int:
  return max(1, len(Windows(data, seq_len)) // global_batch)


def eval_batches(data: np.ndarray, seq_len: int, global_batch: int, max_batches: int | None = None):
  """Yields this host's {'tokens', 'mask'} covering the whole split (or max_batches of it)."""
  n_windows = -(-(len(data) - 1) // seq_len)
  padded = np.zeros(n_windows * seq_len + 1, np.int32)
  padded[:len(data)] = data
  mask_all = np.zeros(n_windows * seq_len, np.float32)
  mask_all[:len(data) - 1] = 1.0
  for idx, real in eval_rows(n_windows, global_batch, max_batches):
    starts = idx * seq_len
    tokens = np.stack([padded[s:s + seq_len + 1] for s in starts])
    mask = np.stack([mask_all[s:s + seq_len] for s in starts]) * real[:, None]
    yield {'tokens': tokens, 'mask': mask.astype(np.float32)}
