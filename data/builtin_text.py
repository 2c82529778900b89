"""Built-in byte corpus, no download: this Python's own standard-library sources.

Every `.py` file under the stdlib (tests, idlelib and site-packages left out),
sorted by relative path and joined with a NUL byte. A file goes to 'valid' when
md5(relative path) % 20 == 0 (about 5%), else to 'train'; 'test' = 'valid'.
The bytes depend on the Python build (the README gives the sizes on CPython 3.11.7).
"""
from __future__ import annotations

import functools
import hashlib
import os
import sysconfig

import numpy as np

_SKIP_DIRS = {'test', 'tests', 'idlelib', 'site-packages', '__pycache__'}


def _files(root: str) -> list[str]:
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
    out += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames
            if f.endswith('.py')]
  return sorted(out)


@functools.lru_cache(maxsize=1)
def read_builtin_text() -> dict[str, np.ndarray]:
  root = sysconfig.get_paths()['stdlib']
  parts = {'train': [], 'valid': []}
  for rel in _files(root):
    with open(os.path.join(root, rel), 'rb') as f:
      split = 'valid' if int(hashlib.md5(rel.encode()).hexdigest(), 16) % 20 == 0 else 'train'
      parts[split].append(f.read())
  out = {k: np.frombuffer(b'\0'.join(v), np.uint8) for k, v in parts.items()}
  out['test'] = out['valid']
  return out

