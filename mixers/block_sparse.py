"""Block-sparse softmax attention: one engine for every fixed sparsity pattern.

The sequence, padded to a multiple of the block size b, is cut into blocks. A
`Layout` says, for every head and query block, which key blocks it sees (a
static table padded with -1 to the same count K on every row), and gives
`allowed(q, k)`, the mask on original positions inside those blocks. Only the
listed blocks are gathered and multiplied, one table column at a time with an
online softmax (running max, float32 sums): the live scores are [nq, b, b] per
head, and never [T, T]. The backward pass (a custom VJP) keeps only the output
and the log-sum-exp per query and recomputes each block's scores, so memory
is O(T (b + D)) per head whatever K is.

Two additions keep the non-local patterns cheap:
- `order`, a per-head permutation of the positions applied before blocking, so
  that keys a strided or dilated head sees (every l-th position) lie in few
  blocks instead of one key in each of many;
- `num_global`: the first g query positions see every key; their rows form a
  table of their own (every block, or in causal mode the blocks up to g)
  rather than widening every row of the main table.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def key_table(rows_per_head: list[list], num_heads: int) -> np.ndarray:
  """Nested [head][query block] iterables of key blocks -> [H, nq, K] int32, -1 padded.

  A single head's rows are shared by all heads; repeats within a row are dropped.
  """
  rows = [[sorted(set(r)) for r in head] for head in rows_per_head]
  width = max(len(r) for head in rows for r in head)
  table = np.full((len(rows), len(rows[0]), width), -1, np.int32)
  for h, head in enumerate(rows):
    for i, r in enumerate(head):
      table[h, i, :len(r)] = r
  return np.broadcast_to(table, (num_heads, *table.shape[1:])).copy()


@dataclasses.dataclass(frozen=True, eq=False)
class Rows:
  """Query blocks and the key blocks each sees: what one call of the block kernel computes."""
  entries: np.ndarray  # [H, nr, K] int32: key blocks of each query block, -1 unused
  qpos: np.ndarray     # [H or 1, nr, b]: the position of each query
  kpos: np.ndarray     # [H or 1, nk, b]: the position held by each key slot
  allowed: Callable
  length: int          # keys at positions >= length are padding


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
  """A static attention pattern for one sequence length (numpy arrays, built once).

  Query position q sees key position k < length where `allowed(q, k)` holds and
  k lies in a key block listed for q's block (for q < num_global: in any block,
  or with causal=True any block holding positions below the global rows).
  `allowed` takes integer arrays with the head axis first (size 1 or H) that
  broadcast together, numpy or jax alike, and returns a boolean array.
  """
  length: int
  block: int
  key_blocks: np.ndarray  # [H, nq, K] int32, -1 = unused entry
  allowed: Callable
  order: np.ndarray | None = None  # [H, nq * b]: the position each slot holds; None = identity
  num_global: int = 0
  causal: bool = False

  def __post_init__(self):
    nq = self.key_blocks.shape[1]
    if nq != -(-self.length // self.block):
      raise ValueError(f'Layout: {nq} query blocks for length {self.length}, block {self.block}')
    kb = np.sort(self.key_blocks, -1)
    if kb.max(initial=-1) >= nq or ((kb[..., 1:] == kb[..., :-1]) & (kb[..., 1:] >= 0)).any():
      # A repeated key block would be counted twice by the softmax.
      raise ValueError('Layout: key blocks out of range or repeated within a row')
    if self.order is not None and not (
        np.sort(self.order, -1) == np.arange(nq * self.block)).all():
      raise ValueError('Layout: order is not a permutation of the padded positions')

  def slot_positions(self) -> np.ndarray:
    """[H or 1, nq, b]: the position held by each slot of each block."""
    nq = self.key_blocks.shape[1]
    order = np.arange(nq * self.block)[None] if self.order is None else self.order
    return order.reshape(order.shape[0], nq, self.block)

  @functools.cached_property
  def rows(self) -> list[Rows]:
    """The main rows (query blocks in slot order), then the global rows if any."""
    slots = self.slot_positions()
    out = [Rows(self.key_blocks, slots, slots, self.allowed, self.length)]
    g = min(self.num_global, self.length)
    if g:  # global rows in position order: blocks 0 .. ng - 1 of positions
      h, nq = self.key_blocks.shape[:2]
      ng = -(-g // self.block)
      needed = [range(nq)]
      if self.causal:  # only keys below the last global row
        needed = [set(np.flatnonzero(s.reshape(-1) < ng * self.block) // self.block)
                  for s in slots]
      table = key_table([[blocks] * ng for blocks in needed], h)
      out.append(Rows(table, np.arange(ng * self.block).reshape(1, ng, self.block), slots,
                      self.allowed, self.length))
    return out


def masked_attention(q, k, v, mask):
  """softmax(q k^T / sqrt(d)) v over the last two axes with excluded keys where mask is False.

  q: [..., Q, D], k, v: [..., K, D], mask broadcastable to [..., Q, K]. Scores,
  exponentials and sums in float32; each row's maximum comes from its allowed
  keys only, and a row with no allowed key gives 0. For short rows (decoding).
  """
  s = jnp.einsum('...qd,...kd->...qk', q, k, preferred_element_type=jnp.float32)
  s = jnp.where(mask, s * q.shape[-1] ** -0.5, -jnp.inf)
  m = jax.lax.stop_gradient(s.max(-1, keepdims=True))
  p = jnp.exp(s - jnp.where(jnp.isfinite(m), m, 0.0))
  norm = p.sum(-1, keepdims=True)
  out = jnp.einsum('...qk,...kd->...qd', p.astype(v.dtype), v,
                   preferred_element_type=jnp.float32)
  return out / jnp.where(norm > 0, norm, 1.0)


# Per-head gather and scatter-add along axis 2 of [B, H, n, ...] arrays with [H, m] indices;
# vmapped so that the head axis stays a batch axis of the gather (shardable over heads).
_take = jax.vmap(lambda x, i: x[:, i], in_axes=(1, 0), out_axes=1)
_add_at = jax.vmap(lambda x, i, u: x.at[:, i].add(u), in_axes=(1, 0, 1), out_axes=1)


def _slot(rows: Rows, e, kb, vb):
  """Table column e ([H, nr], traced): its key and value blocks and the [H, nr, b, b] mask."""
  ec = jnp.maximum(e, 0)
  kpos = jnp.broadcast_to(rows.kpos, (e.shape[0], *rows.kpos.shape[1:]))
  kpos = jnp.take_along_axis(kpos, ec[..., None], axis=1)  # [H, nr, b]
  usable = (e >= 0)[..., None] & (kpos < rows.length)
  mask = usable[:, :, None, :] & rows.allowed(rows.qpos[..., None], kpos[:, :, None, :])
  return _take(kb, ec), _take(vb, ec), mask


def _scores(qb, kj):
  return jnp.einsum('...qd,...kd->...qk', qb, kj,
                    preferred_element_type=jnp.float32) * qb.shape[-1] ** -0.5


def _columns(rows: Rows):
  return jnp.asarray(np.moveaxis(rows.entries, -1, 0))  # [K, H, nr]: scanned over


def _attend_fwd(qb, kb, vb, rows: Rows):
  """Online softmax over the table's columns; returns (out [B, H, nr, b, D] f32, lse)."""
  def fold(carry, e):
    m, norm, acc = carry
    kj, vj, mask = _slot(rows, e, kb, vb)
    s = jnp.where(mask, _scores(qb, kj), -jnp.inf)
    m_new = jnp.maximum(m, s.max(-1))
    shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # rows with nothing allowed yet
    p = jnp.exp(s - shift[..., None])
    scale = jnp.exp(m - shift)
    acc = acc * scale[..., None] + jnp.einsum('...qk,...kd->...qd', p.astype(vj.dtype), vj,
                                              preferred_element_type=jnp.float32)
    return (m_new, norm * scale + p.sum(-1), acc), None

  shape = qb.shape[:-1]
  init = (jnp.full(shape, -jnp.inf), jnp.zeros(shape), jnp.zeros(qb.shape, jnp.float32))
  (m, norm, acc), _ = jax.lax.scan(fold, init, _columns(rows))
  out = acc / jnp.where(norm > 0, norm, 1.0)[..., None]
  lse = jnp.where(norm > 0, m + jnp.log(norm), jnp.inf)  # inf: p = 0 in the backward pass
  return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attend(qb, kb, vb, rows: Rows):
  """Block attention of query blocks qb to the key/value blocks kb, vb listed in `rows`."""
  return _attend_fwd(qb, kb, vb, rows)[0].astype(qb.dtype)


def _attend_vjp_fwd(qb, kb, vb, rows):
  out, lse = _attend_fwd(qb, kb, vb, rows)
  return out.astype(qb.dtype), (qb, kb, vb, out, lse)


def _attend_vjp_bwd(rows, res, dout):
  qb, kb, vb, out, lse = res
  dout = dout.astype(jnp.float32)
  delta = (dout * out).sum(-1, keepdims=True)
  scale = qb.shape[-1] ** -0.5

  def unfold(carry, e):
    dq, dk, dv = carry
    kj, vj, mask = _slot(rows, e, kb, vb)
    p = jnp.where(mask, jnp.exp(_scores(qb, kj) - lse[..., None]), 0.0)
    ds = p * (jnp.einsum('...qd,...kd->...qk', dout, vj) - delta) * scale
    dq = dq + jnp.einsum('...qk,...kd->...qd', ds, kj)
    ec = jnp.maximum(e, 0)  # unused columns have p = 0 and add nothing
    dk = _add_at(dk, ec, jnp.einsum('...qk,...qd->...kd', ds, qb))
    dv = _add_at(dv, ec, jnp.einsum('...qk,...qd->...kd', p, dout))
    return (dq, dk, dv), None

  zeros = lambda x: jnp.zeros(x.shape, jnp.float32)
  (dq, dk, dv), _ = jax.lax.scan(unfold, (zeros(qb), zeros(kb), zeros(vb)), _columns(rows))
  return dq.astype(qb.dtype), dk.astype(kb.dtype), dv.astype(vb.dtype)


_attend.defvjp(_attend_vjp_fwd, _attend_vjp_bwd)


def block_sparse_attention(q, k, v, layout: Layout):
  """Attention of q, k, v: [B, T, H, D] restricted to `layout`; returns [B, T, H, D]."""
  bsz, t, h, d = q.shape
  if t != layout.length:
    raise ValueError(f'block_sparse_attention: length {t}, layout built for {layout.length}')
  b, nq = layout.block, layout.key_blocks.shape[1]

  def to_blocks(x, order=layout.order):  # [B, T, H, D] -> [B, H, n, b, D], in slot order
    x = x.transpose(0, 2, 1, 3)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, -x.shape[2] % b), (0, 0)))
    if order is not None:
      x = _take(x, jnp.asarray(order))
    return x.reshape(bsz, h, -1, b, d)

  main, *glob = layout.rows
  kb, vb = to_blocks(k), to_blocks(v)
  out = _attend(to_blocks(q), kb, vb, main).reshape(bsz, h, nq * b, d)
  if layout.order is not None:
    out = _take(out, jnp.asarray(np.argsort(layout.order, -1)))
  out = out[:, :, :t]
  if glob:  # global queries: their own rows replace the main table's
    g = min(layout.num_global, t)
    out_g = _attend(to_blocks(q[:, :g], None), kb, vb, glob[0]).reshape(bsz, h, -1, d)
    out = jnp.concatenate([out_g[:, :, :g], out[:, :, g:]], axis=2)
  return out.transpose(0, 2, 1, 3)


def dense_mask(layout: Layout) -> np.ndarray:
  """[H, T, T] boolean: the keys each query sees under `layout`, for tests and plots."""
  h, t = layout.key_blocks.shape[0], layout.length
  mask = np.zeros((h, t, t), bool)
  for i, rows in enumerate(layout.rows):
    nr, kw = rows.entries.shape[1:]
    kpos = np.broadcast_to(rows.kpos, (h, *rows.kpos.shape[1:]))
    kpos = kpos[np.arange(h)[:, None, None], np.maximum(rows.entries, 0)]  # [H, nr, K, b]
    usable = (rows.entries >= 0)[..., None] & (kpos < t)
    qpos = np.broadcast_to(rows.qpos, (h, nr, rows.qpos.shape[-1]))[..., None]
    kpos, usable = (a.reshape(h, nr, 1, -1) for a in (kpos, usable))
    seen = usable & rows.allowed(qpos, kpos) & (qpos < t)
    if i == 0:  # the global rows replace the main table's
      seen &= qpos >= min(layout.num_global, t)
    index = [np.broadcast_to(a, seen.shape)[seen] for a in (np.arange(h)[:, None, None, None],
                                                               qpos, kpos)]
    mask[tuple(index)] = True
  return mask
