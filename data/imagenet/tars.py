"""The official archives, read in place: ILSVRC2012_img_train.tar (1000 inner tars, one per
WordNet id) and ILSVRC2012_img_val.tar (50,000 JPEGs in one flat folder) with the validation
labels (one WordNet id a line in file-name order, as TFDS's validation_labels.txt).

Every image is a byte range of the outer tar: the index of (offset, size, label, name) is
built once by reading the tar headers (a few minutes for the training tar, with progress)
and cached next to the tar, or under ~/.cache/aft when that folder is read-only.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import time

import numpy as np

FILES = {'train': 'ILSVRC2012_img_train.tar', 'validation': 'ILSVRC2012_img_val.tar'}
LABELS = 'validation_labels.txt'


def _index_path(tar_path: str) -> str:
  st = os.stat(tar_path)
  key = hashlib.sha1(f'{os.path.abspath(tar_path)}:{st.st_size}:{st.st_mtime_ns}'.encode())
  name = f'.{os.path.basename(tar_path)}.{key.hexdigest()[:10]}.index.npz'
  folder = os.path.dirname(os.path.abspath(tar_path))
  if not os.access(folder, os.W_OK):
    folder = os.path.expanduser('~/.cache/aft')
    os.makedirs(folder, exist_ok=True)
  return os.path.join(folder, name)


def _scan(tar_path: str, nested: bool):
  """[(offset, size, wnid or '', name)] of the image members (inside inner tars when nested)."""
  rows, t0 = [], time.time()
  with tarfile.open(tar_path, 'r:') as outer:
    for n, member in enumerate(outer):
      if not member.isfile():
        continue
      if not nested:
        rows.append((member.offset_data, member.size, '', os.path.basename(member.name)))
        continue
      wnid = os.path.basename(member.name).rsplit('.', 1)[0]
      with tarfile.open(fileobj=outer.extractfile(member), mode='r:') as inner:
        rows += [(member.offset_data + m.offset_data, m.size, wnid, os.path.basename(m.name))
                 for m in inner if m.isfile()]
      if n % 50 == 49:
        print(f'indexing {tar_path}: {n + 1} class tars, {len(rows)} images, '
              f'{time.time() - t0:.0f} s', flush=True)
  return rows


def load_index(tar_path: str, nested: bool):
  """(offsets, sizes, wnids, names) of the tar's images, from the cache when it is there."""
  cache = _index_path(tar_path)
  if os.path.exists(cache):
    z = np.load(cache)
    return z['offsets'], z['sizes'], z['wnids'], z['names']
  try:
    rows = _scan(tar_path, nested)
  except (tarfile.TarError, OSError, EOFError) as e:
    raise ValueError(f'{tar_path} is not a readable tar ({type(e).__name__}: {e}); it may be '
                     f'truncated: download it again') from e
  rows.sort(key=lambda r: (r[2], r[3]))
  offsets, sizes, wnids, names = (np.array(c) for c in zip(*rows)) if rows else ([],) * 4
  arrays = dict(offsets=np.asarray(offsets, np.int64), sizes=np.asarray(sizes, np.int64),
                wnids=np.asarray(wnids, str), names=np.asarray(names, str))
  tmp = cache + f'.tmp{os.getpid()}.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, cache)
  return arrays['offsets'], arrays['sizes'], arrays['wnids'], arrays['names']


class TarSource:
  """Random access to (JPEG bytes, label, file name) of one split, read with pread."""

  def __init__(self, root: str, split: str, num_classes: int, val_labels: str = ''):
    root = os.path.expanduser(root)
    self.path = os.path.join(root, FILES[split])
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f'{self.path} not found: config.data.path must be the folder '
                              f'holding {FILES["train"]} and {FILES["validation"]}')
    self.offsets, self.sizes, wnids, self.names = load_index(self.path, split == 'train')
    if split != 'train':
      wnids = self._val_wnids(val_labels or os.path.join(root, LABELS))
    self.classes = sorted(set(wnids.tolist()))
    if len(self.classes) != num_classes:
      raise ValueError(f'{self.path} holds {len(self.classes)} classes, expected {num_classes} '
                       f'(config.data.num_classes)')
    lookup = {w: i for i, w in enumerate(self.classes)}
    self.labels = np.array([lookup[w] for w in wnids], np.int32)
    self._fd, self._pid = None, None

  def _val_wnids(self, labels_path: str) -> np.ndarray:
    if not os.path.isfile(labels_path):
      raise FileNotFoundError(
          f'validation labels {labels_path!r} not found (config.data.val_labels): one WordNet '
          f"id a line in file-name order, e.g. TFDS's imagenet2012/validation_labels.txt")
    with open(labels_path) as f:
      wnids = np.array([line.strip() for line in f if line.strip()])
    if len(wnids) != len(self.names):
      raise ValueError(f'{labels_path} has {len(wnids)} labels but {self.path} holds '
                       f'{len(self.names)} images; use the labels file of this archive')
    return wnids  # the index is sorted by file name, the order of the labels

  def __len__(self):
    return len(self.offsets)

  def __getitem__(self, i):
    i = int(i)
    if self._pid != os.getpid():  # one descriptor per process (grain workers fork or spawn)
      self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
    data = os.pread(self._fd, int(self.sizes[i]), int(self.offsets[i]))
    return {'jpeg': data, 'label': int(self.labels[i]), 'name': f'{self.path}:{self.names[i]}'}

  def __getstate__(self):
    return {**self.__dict__, '_fd': None, '_pid': None}
