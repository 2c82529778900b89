"""The fixed sparsity patterns (PAPERS.md section 5) as Layouts for the block-sparse engine.

Each pattern is a frozen dataclass: `allowed(q, k)` is its definition on
positions (complete for every pattern but BigBird, whose random blocks live in
the table), `_rows` lists the key blocks each query block needs, and
`layout(T)` builds (and caches) the Layout for one length. Heads come first in
every per-head array; a pattern that is the same for all heads gives one row list.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mixers.block_sparse import Layout, key_table


def _slot_window(i: int, b: int, nq: int, back: int, ahead: int) -> range:
  """The blocks holding slots [i b - back, (i + 1) b - 1 + ahead], clipped to the sequence."""
  return range(max((i * b - back) // b, 0), min(((i + 1) * b - 1 + ahead) // b, nq - 1) + 1)


def _residue_order(padded: int, stride: int) -> np.ndarray:
  """Positions sorted by residue mod stride (then by position): every stride-th one adjacent."""
  return np.argsort(np.arange(padded) % stride, kind='stable')


def _per_head(values, ndim: int) -> np.ndarray:
  """[H] values shaped to broadcast against [H, ...] position arrays of `ndim` axes."""
  return np.asarray(values).reshape((-1,) + (1,) * (ndim - 1))


@dataclasses.dataclass(frozen=True)
class Pattern:
  """What every pattern has: heads, causality and the engine's block size b."""
  num_heads: int
  causal: bool
  block: int

  name = 'sparse'

  def __post_init__(self):
    self._require(self.block >= 1, f'block must be >= 1, got {self.block}')

  def _require(self, ok: bool, message: str):
    if not ok:
      raise ValueError(f'{self.name}: {message}')

  def allowed(self, q, k):
    raise NotImplementedError

  def _rows(self, nq: int, order: np.ndarray | None) -> list[list]:
    """[head (or one for all)][query block] -> the key blocks it needs."""
    raise NotImplementedError

  def _order(self, padded: int) -> np.ndarray | None:
    return None

  def global_positions(self) -> int:
    """Queries at positions below this see every key (the engine's global rows)."""
    return 0

  def decode_ring(self, max_len: int) -> int | None:
    """Non-global positions a decoding step must keep; None: the pattern does not decode."""
    return None

  def reach(self) -> tuple[int, int] | None:
    """(back, ahead): every allowed key lies within q - back .. q + ahead; None when keys
    can be anywhere (strided, global, random blocks). A finite reach is what lets a sequence
    split over devices run with halos (mixers/halo_attention.py)."""
    return None

  @functools.lru_cache(maxsize=32)
  def layout(self, length: int) -> Layout:
    nq = -(-length // self.block)
    order = self._order(nq * self.block)
    return Layout(length, self.block, key_table(self._rows(nq, order), self.num_heads),
                  self.allowed, order, self.global_positions(), self.causal)


@dataclasses.dataclass(frozen=True)
class Local(Pattern):
  """Blocked local attention (Parmar et al. 2018): query block i sees key blocks
  i - neighbours .. i + neighbours; causal: i - neighbours .. i, and no future position."""
  neighbours: int = 1

  name = 'local'

  def __post_init__(self):
    super().__post_init__()
    self._require(self.neighbours >= 0, f'neighbours must be >= 0, got {self.neighbours}')

  def allowed(self, q, k):
    gap = q // self.block - k // self.block
    if self.causal:
      return (k <= q) & (gap <= self.neighbours)
    return abs(gap) <= self.neighbours

  def _rows(self, nq, order):
    reach = self.neighbours * self.block
    ahead = 0 if self.causal else reach
    return [[_slot_window(i, self.block, nq, reach, ahead) for i in range(nq)]]

  def decode_ring(self, max_len):
    return (self.neighbours + 1) * self.block

  def reach(self):
    back = (self.neighbours + 1) * self.block - 1
    return back, 0 if self.causal else back


@dataclasses.dataclass(frozen=True)
class Strided(Pattern):
  """Sparse Transformer (Child et al. 2019): the first num_heads // 2 heads local, the rest strided.

  'strided': local heads see |q - k| <= stride, strided heads (q - k) mod stride == 0.
  'fixed': local heads see their own chunk of `stride` positions, strided heads the last
  `summary` positions of every chunk, and themselves (the paper's set leaves them out, which
  leaves a causal query before the first summary position with nothing to see).
  Strided heads order positions by residue mod stride, so the keys they see fill whole blocks:
  cost O(T (stride + T / stride)) per head pair.
  """
  stride: int = 128
  variant: str = 'strided'
  summary: int = 8

  name = 'strided'

  def __post_init__(self):
    super().__post_init__()
    self._require(self.num_heads >= 2, f'needs num_heads >= 2 (local + strided), '
                  f'got {self.num_heads}')
    self._require(self.stride >= 1, f'stride must be >= 1, got {self.stride}')
    self._require(self.variant in ('strided', 'fixed'),
                  f"variant must be 'strided' or 'fixed', got {self.variant!r}")
    self._require(1 <= self.summary <= self.stride,
                  f'summary must be in [1, stride={self.stride}], got {self.summary}')

  def _strided_heads(self) -> np.ndarray:
    return np.arange(self.num_heads) >= self.num_heads // 2

  def allowed(self, q, k):
    l = self.stride
    if self.variant == 'strided':
      local, strided = abs(q - k) <= l, (q - k) % l == 0
    else:
      local, strided = q // l == k // l, (k % l >= l - self.summary) | (k == q)
    s = _per_head(self._strided_heads(), np.ndim(q))
    seen = (s & strided) | (~s & local)
    return seen & (k <= q) if self.causal else seen

  def _order(self, padded):
    return np.stack([_residue_order(padded, self.stride) if s else np.arange(padded)
                     for s in self._strided_heads()])

  def _rows(self, nq, order):
    b, l, c = self.block, self.stride, self.summary
    rows = []
    for h, strided in enumerate(self._strided_heads()):
      if not strided and self.variant == 'strided':
        rows.append([_slot_window(i, b, nq, l, 0 if self.causal else l) for i in range(nq)])
      elif not strided:  # from the start of the first query's chunk to the end of the last's
        rows.append([_slot_window(i, b, nq, i * b % l,
                                  0 if self.causal else l - 1 - ((i + 1) * b - 1) % l)
                     for i in range(nq)])
      else:  # slot space: one column per residue, start[r] its first slot
        column = order[h] % l
        start = np.searchsorted(column, np.arange(l + 1))
        if self.variant == 'strided':  # the whole columns of the block's queries
          rows.append([_slot_window(
              i, b, nq, i * b - start[column[i * b]],
              0 if self.causal else start[column[(i + 1) * b - 1] + 1] - (i + 1) * b)
              for i in range(nq)])
        else:  # the summary columns, and the block itself
          rows.append([[*range(start[l - c] // b, nq), i] for i in range(nq)])
    return rows

  def decode_ring(self, max_len):
    return max_len  # a strided head sees every l-th position back to the start


@dataclasses.dataclass(frozen=True)
class Global(Pattern):
  """Global tokens (ETC, Longformer's global attention): the first `num_global` positions see
  every key and every query sees them; other queries also see themselves (and nothing else).
  Causal: keys <= q, so the global tokens sit at the start."""
  num_global: int = 16

  name = 'global'

  def __post_init__(self):
    super().__post_init__()
    self._require(self.num_global >= 1, f'num_global must be >= 1, got {self.num_global}')

  def allowed(self, q, k):
    seen = (q < self.num_global) | (k < self.num_global) | (q == k)
    return seen & (k <= q) if self.causal else seen

  def _rows(self, nq, order):
    glob = range(min(-(-self.num_global // self.block), nq))
    return [[[*glob, i] for i in range(nq)]]

  def global_positions(self):
    return self.num_global

  def decode_ring(self, max_len):
    return 1  # the query itself


@dataclasses.dataclass(frozen=True)
class Longformer(Pattern):
  """Longformer (Beltagy et al. 2020): a sliding window of `window` positions on each side
  (causal: before) at a per-head dilation d, i.e. keys q - j d for |j| <= window, plus the
  first `num_global` positions as global tokens. Dilated heads order positions by residue mod d."""
  window: int = 256
  dilation: int | tuple[int, ...] = 1
  num_global: int = 0

  name = 'longformer'

  def __post_init__(self):
    super().__post_init__()
    d = self.dilation
    d = (d,) * self.num_heads if isinstance(d, int) else tuple(d)
    object.__setattr__(self, 'dilation', d)  # one value per head from here on
    self._require(len(d) == self.num_heads and min(d) >= 1,
                  f'dilation must be an int >= 1 or one per head ({self.num_heads}), got {d}')
    self._require(self.window >= 0, f'window must be >= 0, got {self.window}')
    self._require(self.num_global >= 0, f'num_global must be >= 0, got {self.num_global}')

  def reach(self):
    if self.num_global:
      return None
    back = self.window * max(self.dilation)
    return back, 0 if self.causal else back

  def allowed(self, q, k):
    d = _per_head(self.dilation, np.ndim(q))
    gap = q - k
    seen = ((gap % d == 0) & (abs(gap) <= self.window * d)
            | (q < self.num_global) | (k < self.num_global))
    return seen & (k <= q) if self.causal else seen

  def _order(self, padded):
    if max(self.dilation) == 1:
      return None
    return np.stack([_residue_order(padded, d) for d in self.dilation])

  def _rows(self, nq, order):
    b, w = self.block, self.window
    rows = []
    for h in range(1 if order is None else self.num_heads):
      slot_of = np.arange(nq * b) if order is None else np.argsort(order[h])
      glob = set(slot_of[:self.num_global] // b)
      rows.append([glob.union(_slot_window(i, b, nq, w, 0 if self.causal else w))
                   for i in range(nq)])
    return rows

  def global_positions(self):
    return self.num_global

  def decode_ring(self, max_len):
    return self.window * max(self.dilation) + 1


@dataclasses.dataclass(frozen=True)
class BigBird(Pattern):
  """BigBird ITC (Zaheer et al. 2020), on blocks: query block i sees 3 window blocks
  (i - 1 .. i + 1; causal i - 2 .. i), the first `global_blocks` blocks (which see every
  key), and `random_blocks` other blocks per head drawn once from `seed`; causal draws come
  from the past only and depend on (seed, head, i), not on the length."""
  global_blocks: int = 2
  random_blocks: int = 3
  seed: int = 0

  name = 'bigbird'

  def __post_init__(self):
    super().__post_init__()
    self._require(self.global_blocks >= 0 and self.random_blocks >= 0,
                  f'global_blocks and random_blocks must be >= 0, '
                  f'got {self.global_blocks}, {self.random_blocks}')

  def allowed(self, q, k):  # block membership is in the table; inside blocks only causality
    return (k <= q) if self.causal else (q >= 0) & (k >= 0)

  def window(self, i: int, nq: int) -> range:
    return range(max(i - 2, 0), i + 1) if self.causal else range(max(i - 1, 0), min(i + 2, nq))

  def draw_random(self, nq: int) -> np.ndarray:
    """[H, nq, random_blocks] random key blocks, -1 where too few blocks are left to draw."""
    r, g = self.random_blocks, self.global_blocks
    table = np.full((self.num_heads, nq, r), -1, np.int32)
    for i in range(g, nq):  # global rows already see everything
      pool = np.setdiff1d(np.arange(g, i if self.causal else nq), self.window(i, nq))
      for h in range(self.num_heads):
        pick = np.random.default_rng((self.seed, h, i)).permutation(pool)[:r]
        table[h, i, :len(pick)] = pick
    return table

  def _rows(self, nq, order):
    rand = self.draw_random(nq)
    glob = range(min(self.global_blocks, nq))
    return [[[*self.window(i, nq), *glob, *rand[h, i][rand[h, i] >= 0]] for i in range(nq)]
            for h in range(self.num_heads)]

  def global_positions(self):
    return self.global_blocks * self.block
