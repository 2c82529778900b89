"""LRA Pathfinder: are the two dots joined by a path? Greyscale PNGs, one pixel one token.

Release layout: `pathfinder<res>/<difficulty>/metadata/<n>.npy`, plain text despite the
name, one image a line, space separated: field 0 the image's sub-folder (`imgs/<n>`),
field 1 its file name, field 3 the label. Pathfinder-32 'hard' is `pathfinder32/
curv_contour_length_14`. Every metadata file is read in numeric order; empty image files
(the release has one, `curv_baseline/imgs/0/sample_172.png`) are left out and counted.
The split is 80/10/10 of one shuffled order from the configured seed, so two machines get the
same split (repositories that shuffle differently report different numbers).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from data.lra import Examples, LayoutError, find

SPLIT_FRACTIONS = {'train': (0.0, 0.8), 'valid': (0.8, 0.9), 'test': (0.9, 1.0)}


def _decode(path: str, resolution: int) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as im:
    pixels = np.asarray(im.convert('L'), np.int32)
  if pixels.shape != (resolution, resolution):
    raise LayoutError(f'{path}: a {pixels.shape} image, expected {resolution}x{resolution}')
  return pixels.reshape(-1)


@functools.lru_cache(maxsize=4)
def index(root: str, resolution: int, difficulty: str) -> tuple[list[str], np.ndarray, list[str]]:
  """(image paths, labels, empty files left out) of every metadata line, in file order."""
  sub = os.path.join(f'pathfinder{resolution}', difficulty)
  # root may be lra_release/, the pathfinder<res>/ folder or the difficulty's folder itself.
  meta = find(root, [os.path.join(c, 'metadata') for c in (sub, difficulty, '')],
              f'Pathfinder-{resolution} {difficulty!r} metadata folder (<n>.npy text files, '
              f'one line per image, beside imgs/<n>/sample_<k>.png)')
  base = os.path.dirname(meta)
  names = [n for n in os.listdir(meta) if n.endswith('.npy')]
  if not names:
    raise LayoutError(f'{meta} has no <n>.npy metadata files')
  names.sort(key=lambda n: (not n[:-4].isdigit(), int(n[:-4]) if n[:-4].isdigit() else n))
  paths, labels, empty = [], [], []
  for name in names:
    with open(os.path.join(meta, name)) as f:
      for i, line in enumerate(f, 1):
        fields = line.split()
        if not fields:
          continue
        if len(fields) < 4 or fields[3] not in ('0', '1'):
          raise LayoutError(f'{os.path.join(meta, name)} line {i}: expected space-separated '
                            f'fields <folder> <file> <..> <label 0/1>, got {line.strip()!r}')
        path = os.path.join(base, fields[0], fields[1])
        try:
          size = os.path.getsize(path)
        except OSError:
          raise LayoutError(f'{path} (named in {os.path.join(meta, name)} line {i}) not found')
        if size == 0:
          empty.append(path)
          continue
        paths.append(path)
        labels.append(int(fields[3]))
  return paths, np.array(labels, np.int32), empty


def read_release(root: str, split: str, *, seed: int, resolution: int = 32,
                 difficulty: str = 'curv_contour_length_14') -> Examples:
  paths, labels, _ = index(os.path.expanduser(root), resolution, difficulty)
  order = np.random.default_rng(seed).permutation(len(paths))
  lo, hi = SPLIT_FRACTIONS[split]
  rows = order[int(lo * len(paths)):int(hi * len(paths))]
  return Examples([paths[i] for i in rows], labels[rows], lambda p: _decode(p, resolution))
