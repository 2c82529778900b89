"""LRA Retrieval (ACL Anthology Network): pairs of papers, label 1 when one cites the other.

Release files `tsv_data/new_aan_pairs.{train,eval,test}.tsv`: no header, five tab-separated
columns `label id1 id2 text1 text2`, label a float 0/1, read with quoting off. Each text is
byte tokens (byte + 1, 0 padding) cut to the configured length; an item's tokens are
[2, length] (the two texts).
"""
from __future__ import annotations

import os

import numpy as np

from data.lra import Examples, LayoutError, byte_tokens, find, read_tsv

FILES = {'train': 'new_aan_pairs.train.tsv', 'valid': 'new_aan_pairs.eval.tsv',
         'test': 'new_aan_pairs.test.tsv'}


def read_release(root: str, split: str, length: int) -> Examples:
  """root: lra_release/ (or its tsv_data/ folder)."""
  name = FILES[split]
  path = find(root, [os.path.join('tsv_data', name), name], f'AAN retrieval {split} file {name}')
  rows = read_tsv(path, 5)
  labels = []
  for i, row in enumerate(rows, 1):
    try:
      label = float(row[0])
    except ValueError:
      label = None
    if label not in (0.0, 1.0):
      raise LayoutError(f'{path} line {i}: column 1 must be the label 0 or 1, got {row[0]!r} '
                        f'(columns: label id1 id2 text1 text2)')
    labels.append(int(label))
  pairs = [(r[3], r[4]) for r in rows]
  return Examples(pairs, np.array(labels),
                  lambda p: np.stack([byte_tokens(p[0], length), byte_tokens(p[1], length)]))
