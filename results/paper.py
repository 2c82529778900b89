"""The AFT paper's numbers as data, keyed by this project's mixers, for the tables that set
our runs beside them (results/tables.py) and the sweep (results/sweep.py)."""
from __future__ import annotations

import dataclasses
from typing import Callable

SOURCE = 'Zhai et al. 2021, An Attention Free Transformer, arXiv:2105.14103'

# The paper's method names; aft_local is named with its window ('AFT-local-32').
METHODS = {'softmax': 'Transformer', 'lsh': 'Reformer', 'synthesizer': 'Synthesizer',
           'linear': 'Linear Transformer', 'performer': 'Performer', 'aft_simple': 'AFT-simple'}


def method(mixer: str, window: int | None) -> str:
  """The paper's name for a mixer (Tables 2 and 4); a mixer it has no name for keeps its own."""
  if mixer == 'aft_local':
    return f'AFT-local-{window}'
  return METHODS.get(mixer, f'`{mixer}`')


def window_label(mixer: str, window: int | None) -> str:
  """Table 5's row name: the window, 0 being AFT-simple."""
  return '0 (AFT-simple)' if mixer == 'aft_simple' else str(window)


@dataclasses.dataclass(frozen=True)
class Row:
  mixer: str
  window: int | None  # aft_local's window; None for every other mixer
  layers: int
  dim: int
  test: float
  train: float | None = None

  @property
  def key(self) -> tuple:
    return self.mixer, self.window, self.layers, self.dim


@dataclasses.dataclass(frozen=True)
class Table:
  name: str
  title: str
  task: str                  # config.task of the runs that belong in it
  data: str                  # config.data.name of the paper's dataset
  unit: str
  label_header: str
  label: Callable[[str, int | None], str]
  mixers: tuple[str, ...] | None  # the mixers it holds; None: every one
  batch_size: int
  epochs: int
  steps: int
  tokens_per_example: int
  decimals: int              # as the paper prints its numbers
  rows: tuple[Row, ...]

  @property
  def tokens(self) -> int:
    """The paper's training budget in tokens seen."""
    return self.steps * self.batch_size * self.tokens_per_example

  @property
  def sizes(self) -> set[tuple[int, int]]:
    return {(r.layers, r.dim) for r in self.rows}


_CIFAR10 = dict(task='image_lm', data='cifar10', unit='bits/dim', batch_size=128, epochs=200,
                steps=78_125, tokens_per_example=3072, decimals=2)
_ENWIK8 = dict(task='text_lm', data='enwik8', unit='bits/char', batch_size=128, epochs=100,
               steps=68_600, tokens_per_example=1024, decimals=3)

TABLE2 = Table(
    name='Table 2', title='CIFAR-10', label_header='method', label=method, mixers=None,
    rows=(Row('softmax', None, 12, 512, 2.88, 2.90), Row('softmax', None, 24, 256, 2.86, 2.90),
          Row('aft_local', 256, 12, 512, 2.80, 2.78), Row('aft_local', 256, 24, 256, 2.74, 2.75),
          Row('aft_simple', None, 24, 256, 2.89, 2.82)),
    **_CIFAR10)

TABLE4 = Table(
    name='Table 4', title='Enwik8', label_header='method', label=method, mixers=None,
    rows=(Row('softmax', None, 12, 512, 1.137, 0.977), Row('softmax', None, 24, 256, 1.130, 1.039),
          Row('lsh', None, 12, 512, 1.195, 1.04), Row('synthesizer', None, 12, 512, 1.298, 0.994),
          Row('linear', None, 12, 512, 1.207, 0.981), Row('performer', None, 12, 512, 1.199, 1.002),
          Row('aft_local', 32, 12, 512, 1.180, 0.854), Row('aft_local', 32, 24, 256, 1.154, 0.972),
          Row('aft_simple', None, 24, 256, 1.209, 1.046)),
    **_ENWIK8)

_WINDOWS = {1: 1.205, 2: 1.176, 4: 1.165, 8: 1.162, 32: 1.154, 64: 1.160, 128: 1.165,
            256: 1.164, 512: 1.171, 1024: 1.173}

TABLE5 = Table(
    name='Table 5', title='Enwik8, AFT-local window', label_header='window', label=window_label,
    mixers=('aft_local', 'aft_simple'),
    rows=(Row('aft_simple', None, 24, 256, 1.209),
          *(Row('aft_local', w, 24, 256, bpc) for w, bpc in _WINDOWS.items())),
    **_ENWIK8)

TABLES = (TABLE2, TABLE4, TABLE5)


def enwik8_test_bpc(mixer: str, size: tuple[int, int] | None = None) -> float | None:
  """Table 4's test bits/char of a mixer at (layers, dim); without a size, its 12x512 row where
  it has one, else its 24x256 row (AFT-simple). aft_local is the paper's window 32."""
  rows = [r for r in TABLE4.rows if r.mixer == mixer and (size in (None, (r.layers, r.dim)))]
  return rows[0].test if rows else None


def window_test_bpc(window: int) -> float | None:
  """Table 5's test bits/char of AFT-local at a window (0: AFT-simple), 24 layers, d 256."""
  return {r.window or 0: r.test for r in TABLE5.rows}.get(int(window))
