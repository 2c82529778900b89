"""CIFAR-10 as uint8 [N, 32, 32, 3] images, read from the official python archive
(`cifar-10-python.tar.gz`, no extraction step) or a TFDS `cifar10` prepared in array_record."""
from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np

URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
_MEMBERS = {'train': [f'cifar-10-batches-py/data_batch_{i}' for i in range(1, 6)],
            'test': ['cifar-10-batches-py/test_batch']}


def read_cifar10_archive(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 32, 32, 3], labels int64 [N]) in the archive's order."""
  path = os.path.expanduser(path)
  fix = (f'Download {URL} (163 MB) and set --config.data.path=/path/to/cifar-10-python.tar.gz '
         f"(or --config.data.format=tfds with a prepared TFDS 'cifar10').")
  if not os.path.isfile(path):
    raise FileNotFoundError(f'CIFAR-10 archive not found at {path!r} (config.data.path). {fix}')
  images, labels = [], []
  try:
    with tarfile.open(path, 'r:gz') as tar:
      for name in _MEMBERS[split]:
        batch = pickle.load(tar.extractfile(name), encoding='bytes')
        # Rows are 3072 bytes: the R plane, then G, then B, each 32x32 in raster order.
        images.append(np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b'labels'], np.int64))
  except (tarfile.TarError, EOFError, OSError, KeyError, pickle.UnpicklingError, ValueError) as e:
    raise ValueError(f'{path!r} (config.data.path) is not a readable CIFAR-10 python archive '
                     f'({type(e).__name__}: {e}); it may be truncated. {fix}') from e
  return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)


class TfdsImages:
  """Random access to the images of a prepared TFDS dataset (no TensorFlow needed)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several types for unprepared data
      raise FileNotFoundError(
          f"TFDS {name!r} split {split!r} is not prepared in array_record format under "
          f'data_dir={data_dir!r} (config.data.tfds_data_dir): {type(e).__name__}: '
          f'{str(e).splitlines()[0]}') from e

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return np.asarray(self.source[int(i)]['image'], np.uint8)
