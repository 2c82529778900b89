"""LRA Text: IMDB reviews as bytes (token = byte + 1, `<br />` left in), binary sentiment.

From the `aclImdb` folder of the original release (`aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`,
read in (label, id) order) or a TFDS `imdb_reviews` prepared in array_record. As in LRA the
test split serves as both validation and test (IMDB has no validation split).
"""
from __future__ import annotations

import os
import re

import numpy as np

from data.lra import Examples, LayoutError, byte_tokens, find

IMDB_URL = 'https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz'
_SPLIT = {'train': 'train', 'valid': 'test', 'test': 'test'}
_NAME = re.compile(r'^(\d+)_(\d+)\.txt$')


def read_aclimdb(root: str, split: str, length: int) -> Examples:
  """root: the aclImdb folder or the folder holding it."""
  folder = find(root, [os.path.join('aclImdb', _SPLIT[split]), _SPLIT[split]],
                f'IMDB {_SPLIT[split]} folder (with neg/ and pos/)')
  texts, labels = [], []
  for label, sub in enumerate(('neg', 'pos')):
    path = os.path.join(folder, sub)
    if not os.path.isdir(path):
      raise LayoutError(f'{path} not found: an aclImdb split folder holds neg/ and pos/ '
                        f'({IMDB_URL})')
    names = [n for n in os.listdir(path) if _NAME.match(n)]
    if not names:
      raise LayoutError(f'{path} has no <id>_<rating>.txt review files ({IMDB_URL})')
    for name in sorted(names, key=lambda n: int(_NAME.match(n).group(1))):
      with open(os.path.join(path, name), 'rb') as f:
        texts.append(f.read())
      labels.append(label)
  return Examples(texts, np.array(labels), lambda t: byte_tokens(t, length))


class _TfdsTexts:
  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return self.source[int(i)]


def read_tfds(data_dir: str, split: str, length: int) -> Examples:
  import tensorflow_datasets as tfds
  try:
    source = tfds.data_source('imdb_reviews', split=_SPLIT[split], data_dir=data_dir or None,
                              download=False)
  except Exception as e:  # TFDS raises several types for unprepared data
    raise LayoutError(f"TFDS 'imdb_reviews' split {_SPLIT[split]!r} is not prepared in "
                      f'array_record format under data_dir={data_dir!r} '
                      f'(config.data.tfds_data_dir): {type(e).__name__}: '
                      f'{str(e).splitlines()[0]}') from e
  labels = np.array([int(source[i]['label']) for i in range(len(source))])
  return Examples(_TfdsTexts(source), labels, lambda row: byte_tokens(row['text'], length))
