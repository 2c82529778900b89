"""Enwik8 from the standard `enwik8.zip` (the Hutter Prize file): no build step, no TensorFlow.

The standard split: first 90M bytes train, next 5M valid, last 5M test (as
fractions 0.90/0.05/0.05 of the file, which is exactly 100,000,000 bytes).
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

ENWIK8_BYTES = 100_000_000
URL = 'http://mattmahoney.net/dc/enwik8.zip'


def _help(path: str) -> str:
  return (f'Download {URL} (36 MB) and pass its path with '
          f'--config.data.path=/path/to/enwik8.zip (given: {path!r}).')


def read_enwik8(path: str, expected_bytes: int = ENWIK8_BYTES) -> dict[str, np.ndarray]:
  """Returns {'train', 'valid', 'test'} uint8 arrays; clear errors for a missing or bad file."""
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'enwik8 zip not found at {path!r}. {_help(path)}')
  try:
    with zipfile.ZipFile(path) as zf:
      if 'enwik8' not in zf.namelist():
        raise ValueError(f'{path!r} has no member "enwik8" (members: {zf.namelist()[:5]}). '
                         + _help(path))
      raw = zf.read('enwik8')  # checks the CRC: a damaged file fails here
  except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as e:
    raise ValueError(f'{path!r} is not a readable enwik8 zip ({e}); it may be truncated. '
                     + _help(path)) from e
  if len(raw) != expected_bytes:
    raise ValueError(f'{path!r} holds {len(raw):,} bytes of enwik8, expected {expected_bytes:,}; '
                     f'the file is truncated or not enwik8. ' + _help(path))
  data = np.frombuffer(raw, np.uint8)
  a, b = int(expected_bytes * 0.90), int(expected_bytes * 0.95)
  return {'train': data[:a], 'valid': data[a:b], 'test': data[b:]}
