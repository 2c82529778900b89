"""Tiny Long Range Arena files in the release's formats, written by the tests (no downloads)."""
from __future__ import annotations

import os

import numpy as np

from data import listops


def write_listops(root, sizes=None, seed=0) -> dict:
  """root/listops-1000/basic_{train,val,test}.tsv with the header row; returns the pairs."""
  sizes = sizes or {'train': 16, 'val': 8, 'test': 8}
  os.makedirs(os.path.join(root, 'listops-1000'), exist_ok=True)
  out = {}
  for k, (name, n) in enumerate(sizes.items()):
    pairs = list(listops.generate(n, seed=seed + k, min_length=5, max_length=30, max_depth=3))
    with open(os.path.join(root, 'listops-1000', f'basic_{name}.tsv'), 'w') as f:
      f.write('Source\tTarget\n' + ''.join(f'{s}\t{t}\n' for s, t in pairs))
    out[name] = pairs
  return out


def aan_row(label, i, text1, text2):
  return f'{float(label)}\tid{i}a\tid{i}b\t{text1}\t{text2}\n'


def write_aan(root, n=16) -> dict:
  """root/tsv_data/new_aan_pairs.{train,eval,test}.tsv: label id1 id2 text1 text2, no header.
  Texts hold quoting characters; the label follows a word in text1 (learnable)."""
  os.makedirs(os.path.join(root, 'tsv_data'), exist_ok=True)
  out = {}
  for split in ('train', 'eval', 'test'):
    rows = []
    for i in range(n):
      label = i % 2
      rows.append((label, f'paper "{"yes" if label else "no"}" {i}', f"cites 'x' {i * 7}"))
    with open(os.path.join(root, 'tsv_data', f'new_aan_pairs.{split}.tsv'), 'w') as f:
      f.write(''.join(aan_row(l, i, a, b) for i, (l, a, b) in enumerate(rows)))
    out[split] = rows
  return out


def write_pathfinder(root, n=20, empty=(3,), size=32) -> tuple[str, np.ndarray]:
  """root/pathfinder32/curv_contour_length_14/{metadata/0.npy, imgs/0/sample_<k>.png}: label 1
  images are bright on the left half. Indices in `empty` are written as empty files."""
  from PIL import Image
  base = os.path.join(root, f'pathfinder{size}', 'curv_contour_length_14')
  os.makedirs(os.path.join(base, 'imgs', '0'), exist_ok=True)
  os.makedirs(os.path.join(base, 'metadata'), exist_ok=True)
  rng = np.random.default_rng(0)
  labels, lines = [], []
  for k in range(n):
    label = k % 2
    path = os.path.join(base, 'imgs', '0', f'sample_{k}.png')
    if k in empty:
      open(path, 'wb').close()
    else:
      pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
      pixels[:, :size // 2] += 190 * label
      Image.fromarray(pixels, 'L').save(path)
      labels.append(label)
    lines.append(f'imgs/0 sample_{k}.png 0 {label} 14 1.5\n')
  with open(os.path.join(base, 'metadata', '0.npy'), 'w') as f:
    f.write(''.join(lines))
  return base, np.array(labels)


def write_aclimdb(root, n=8) -> dict:
  """root/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt; positive reviews say 'great'."""
  out = {}
  for split in ('train', 'test'):
    for label, sub in enumerate(('neg', 'pos')):
      folder = os.path.join(root, 'aclImdb', split, sub)
      os.makedirs(folder, exist_ok=True)
      for i in range(n):
        text = f'{"great" if label else "awful"} film {i}<br /><br />"quoted"'
        with open(os.path.join(folder, f'{i}_{7 if label else 2}.txt'), 'w') as f:
          f.write(text)
        out[(split, label, i)] = text
  return out
