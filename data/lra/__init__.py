"""Long Range Arena data: readers for the release files exactly as distributed (ListOps TSVs,
the AAN retrieval TSVs, Pathfinder PNGs with their metadata), IMDB and grey CIFAR-10 from files
the user has, and the grain pipeline that batches them.

Every reader returns a random-access source whose items are {'tokens': int32 [length] (or
[2, length] for retrieval pairs), 'label': int32}; token 0 is padding for the text tasks.
A reader checks the layout first and says what it expected where.
"""
from __future__ import annotations

import csv
import os
import sys

import numpy as np

RELEASE_URL = 'https://storage.googleapis.com/long-range-arena/lra_release.gz'


class LayoutError(FileNotFoundError):
  """The files are not where (or not what) a reader expects; the message says which and how."""


def find(root: str, candidates: list[str], what: str, option: str = 'config.data.path') -> str:
  """The first of root/<candidate> that exists; else an error listing every place looked."""
  root = os.path.expanduser(root)
  for c in candidates:
    path = os.path.join(root, c)
    if os.path.exists(path):
      return path
  looked = '\n  '.join(os.path.join(root, c) for c in candidates)
  raise LayoutError(f'{what} not found; looked for:\n  {looked}\n{option}={root!r} should be '
                    f'the unpacked lra_release/ folder of {RELEASE_URL} (or the folder named).')


class Examples:
  """A random-access split: items[i] -> encode(item) as {'tokens', 'label'}."""

  def __init__(self, items: list, labels: np.ndarray, encode):
    if len(items) != len(labels):
      raise ValueError(f'{len(items)} examples but {len(labels)} labels')
    self.items, self.labels, self.encode = items, np.asarray(labels, np.int32), encode

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    i = int(i)
    return {'tokens': self.encode(self.items[i]), 'label': self.labels[i]}


def byte_tokens(text: bytes | str, length: int) -> np.ndarray:
  """Bytes as tokens byte + 1 (0 is padding), truncated or zero-padded to `length`."""
  if isinstance(text, str):
    text = text.encode('utf-8')
  raw = np.frombuffer(text[:length], np.uint8).astype(np.int32) + 1
  out = np.zeros(length, np.int32)
  out[:len(raw)] = raw
  return out


def read_tsv(path: str, columns: int, header: tuple[str, ...] | None = None) -> list[list[str]]:
  """Rows of a tab-separated file read with quoting off (a '"' inside a text is text), checked
  for their column count; a header row, when given, must match."""
  csv.field_size_limit(sys.maxsize)  # AAN texts run to tens of kilobytes
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE))
  if header is not None:
    if not rows or tuple(rows[0]) != header:
      got = rows[0] if rows else 'an empty file'
      raise LayoutError(f'{path}: expected the header row {list(header)}, got {got}')
    rows = rows[1:]
  for i, row in enumerate(rows, 2 if header else 1):
    if len(row) != columns:
      raise LayoutError(f'{path} line {i}: expected {columns} tab-separated columns, got '
                        f'{len(row)} ({row[:2]}...)')
  return rows
