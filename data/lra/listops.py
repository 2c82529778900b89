"""ListOps: the release's TSVs (`listops-1000/basic_{train,val,test}.tsv`, header `Source	Target`)
or trees of our own generator (data/listops.py) in the same form.

Tokens: the LRA pipeline's, parentheses dropped and split on whitespace, over a fixed
vocabulary (0 padding, then the digits, the operators and ']'), truncated or padded to
the configured length.
"""
from __future__ import annotations

import os

import numpy as np

from data import listops
from data.lra import Examples, LayoutError, find, read_tsv

VOCAB = ('<pad>',) + listops.DIGITS + listops.OPERATORS + (listops.END,)
_IDS = {t: i for i, t in enumerate(VOCAB)}
FILES = {'train': 'basic_train.tsv', 'valid': 'basic_val.tsv', 'test': 'basic_test.tsv'}


def encode(source: str, length: int) -> np.ndarray:
  ids = [_IDS[t] for t in source.split() if t not in ('(', ')')][:length]
  out = np.zeros(length, np.int32)
  out[:len(ids)] = ids
  return out


def from_pairs(pairs: list[tuple[str, int]], length: int, where: str = 'generated') -> Examples:
  for i, (source, _) in enumerate(pairs):
    unknown = {t for t in source.split() if t not in _IDS and t not in ('(', ')')}
    if unknown:
      raise LayoutError(f'{where} example {i}: tokens {sorted(unknown)} are not ListOps '
                        f'tokens {VOCAB[1:]}')
  return Examples([s for s, _ in pairs], np.array([t for _, t in pairs]),
                  lambda s: encode(s, length))


def read_release(root: str, split: str, length: int) -> Examples:
  """root: lra_release/ (or its listops-1000/ folder)."""
  name = FILES[split]
  path = find(root, [os.path.join('listops-1000', name), name], f'ListOps {split} file {name}')
  rows = read_tsv(path, 2, header=('Source', 'Target'))
  pairs = []
  for i, (source, target) in enumerate(rows, 2):
    if target not in listops.DIGITS:
      raise LayoutError(f'{path} line {i}: Target must be a digit 0-9, got {target!r}')
    pairs.append((source, int(target)))
  return from_pairs(pairs, length, path)


def generate_splits(sizes: dict[str, int], *, seed: int, length: int, min_length: int,
                    max_length: int, max_depth: int, max_args: int) -> dict[str, Examples]:
  """Disjoint generated splits; evaluation splits first so that their trees do not depend on
  the training set's size. Deterministic from seed (split k draws from seed + k)."""
  seen: set = set()
  out = {}
  for k, split in enumerate(s for s in ('valid', 'test', 'train') if s in sizes):
    pairs = []
    for pair in listops.generate(sizes[split], seed=seed + k, min_length=min_length,
                                 max_length=max_length, max_depth=max_depth,
                                 max_args=max_args, exclude=seen):
      pairs.append(pair)
      if len(pairs) % 10_000 == 0:  # the full-size set (100k long trees) takes minutes
        print(f'  ListOps {split}: {len(pairs):,} / {sizes[split]:,} trees', flush=True)
    out[split] = from_pairs(pairs, length)
  return out
