"""The user's own bytes for the byte LM: a file, a folder of files or a zip, read once.

Either one source split by fractions (train, valid, test: consecutive byte ranges, in
that order) or one source per split. A folder's files (or a zip's members) are taken
in sorted path order and joined with a NUL byte, as the built-in text is.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

SPLITS = ('train', 'valid', 'test')


def read_source(path: str) -> bytes:
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    return b'\0'.join(open(f, 'rb').read() for f in files)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'text data not found at {path!r}; set --config.data.path (a file, '
                            f'a folder or a zip) or --config.data.<split>_path')
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      names = sorted(n for n in zf.namelist() if not n.endswith('/'))
      return b'\0'.join(zf.read(n) for n in names)
  with open(path, 'rb') as f:
    return f.read()


def read_text(path: str = '', fractions=(0.9, 0.05, 0.05), split_paths: dict | None = None,
              min_bytes: int = 2) -> dict[str, np.ndarray]:
  """{'train', 'valid', 'test'} uint8 arrays; each split must hold at least min_bytes."""
  split_paths = {k: v for k, v in (split_paths or {}).items() if v}
  if split_paths:
    missing = [s for s in SPLITS if s not in split_paths]
    if missing:
      raise ValueError(f'data.<split>_path is set for {sorted(split_paths)} but not for '
                       f'{missing}; give all three, or data.path with data.fractions')
    out = {s: np.frombuffer(read_source(p), np.uint8) for s, p in split_paths.items()}
    where = split_paths
  else:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
      raise ValueError(f'data.fractions must be three non-negative numbers summing to 1 (train, '
                       f'valid, test), got {tuple(fractions)}')
    data = np.frombuffer(read_source(path), np.uint8)
    a = int(len(data) * fractions[0])
    b = a + int(len(data) * fractions[1])
    out = {'train': data[:a], 'valid': data[a:b], 'test': data[b:]}
    where = {s: path for s in SPLITS}
  for s in SPLITS:
    if len(out[s]) < min_bytes:
      raise ValueError(f'the {s} split of {where[s]!r} has {len(out[s]):,} bytes, fewer than the '
                       f'{min_bytes} one window needs (data.seq_len + 1); give more text or '
                       f'change data.fractions')
  return out
