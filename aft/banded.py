"""Numerically safe AFT sums, block by block.

Every sum here is sum_t' exp(K_t' + w_tt') V_t' (and the same without V, the
normaliser), kept as a pair (num, den) with a reference `ref`: the true value is
(num, den) * exp(ref), and every exponential has a non-positive argument. In
causal mode no reference depends on a later key.

The sequence is cut into blocks of c positions. Keys more than one block away
enter through a scan over block summaries (T / c of them); the neighbouring and
own blocks through [c, c] matmuls with the bias weights. The causal banded sum
and its hand-written gradient live in aft/banded_causal.py (prefix-maximum
references, the own block by recursive doubling, a scan over groups of blocks);
`causal_diag` is the doubling with log-sum-exp merges that AFT-full uses.

Arrays carry heads: k [B, T, h, dk], v [B, T, h, dh] with dk in {1, dh}, so one
code path serves AFT-local (h = 1, dk = dh = d) and AFT-conv (dk = 1, one key per
head). AFT-simple's causal sum is its own two-level scan (aft/simple_scan.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.banded_causal import causal_sum
from aft.blocks import NEG, axis_sum, from_blocks, lse_merge, shift, to_blocks

_sg = jax.lax.stop_gradient


def banded(q, k, v, blocks, *, left: int, right: int, causal: bool):
  """sigmoid(q_t) sum_t' exp(K_t' + w_tt') V_t' / sum_t' exp(K_t' + w_tt') with w = 0
  outside the band; q [B, T, h, dh] like v.

  The band is -left <= t' - t <= right (right = 0 when causal). `blocks[o]` is the
  bias of query block i against key block i + o, [n or 1, c, c, h], for o in
  (-1, 0, 1) (no 1 when causal), with c = block_size(...) >= max(left, right).
  Every weight is positive (no band term is subtracted from a global sum), so the
  normaliser never cancels. Cost O(T c d). Returns [B, T, h, dh] float32.
  """
  T = k.shape[1]
  c = blocks[0].shape[-2]
  kb, vb = to_blocks(k, c, NEG), to_blocks(v, c)
  weights, w_out = _band_weights(blocks, kb.shape[1], c, T, left, right, causal)

  def near(o, z):  # query block i against key block i + o, z [B, n, c, h, ·]
    return jnp.einsum('nqkh,bnkhz->bnqhz', weights[o], shift(z, -o, axis=1))

  if not causal:
    e = jnp.exp(kb - _sg(kb.max(axis=(1, 2), keepdims=True)))
    out = []
    for z in (e * vb, e):
      total = axis_sum(z, 2, keepdims=True)
      far = (shift(jnp.cumsum(total, axis=1), 2, axis=1) +
             shift(jnp.cumsum(total[:, ::-1], axis=1)[:, ::-1], -2, axis=1))
      out.append(far * w_out + sum(near(o, z) for o in weights))
    return jax.nn.sigmoid(q) * from_blocks(out[0] / out[1], T)

  return from_blocks(causal_sum(to_blocks(q, c), kb, vb, weights[0], weights[-1], w_out), T)


def _band_weights(blocks, n, c, T, left, right, causal):
  """Weights exp(w - mw) in the band, exp(-mw) outside it (w = 0), 0 for absent or
  future keys; mw is each row's maximum bias (0 included when a row has keys outside
  the band). Returns ({o: [n, c, c, h]}, exp(-mw) [1, n, c, h, 1])."""
  tq = jnp.arange(n * c).reshape(n, c, 1)
  has_out = tq - left - 1 >= 0
  if not causal:
    has_out |= tq + right + 1 < T
  mw = jnp.where(has_out, 0., NEG)
  masks = {}
  for o, w in blocks.items():
    tk = tq.reshape(n, 1, c) + o * c
    valid = (tk >= 0) & (tk < T) & ((tk <= tq) if causal else True)
    band = valid & (tk - tq >= -left) & (tk - tq <= right)
    masks[o] = valid[..., None], band[..., None]
    mw = jnp.maximum(mw, jnp.where(band[..., None], w, NEG).max(axis=2))
  mw = _sg(mw)[:, :, None]
  weights = {o: jnp.where(masks[o][0], jnp.exp(jnp.where(masks[o][1], w, 0.) - mw), 0.)
             for o, w in blocks.items()}
  # Rows without outside keys may have mw < 0; their outside weight multiplies zeros.
  return weights, jnp.exp(-jnp.maximum(mw, 0.)).reshape(1, n, c, -1, 1)


def causal_diag(C, k, v):
  """Causal in-block sums sum_{t' <= t} C[t, t'] exp(k_t') v_t', exact per row.

  C [n, c, c, h] (c a power of two; its lower triangle is used); k [B, n, c, h, dk], v [B, n, c, h, dh]. Returns (ref, num, den), ref being
  the running max of k inside the block. Sub-blocks double in size; at each step
  the right half takes its left half's keys (all in its past) at their maximum, as
  one matmul, then rescales to its own running max: no [c, c, d] tensor.
  """
  B, n, c = k.shape[:3]
  diag = jnp.moveaxis(jnp.diagonal(C, axis1=1, axis2=2), -1, 1)[None, ..., None]
  ref, num, den = k, diag * v, jnp.broadcast_to(diag, k.shape)
  b = 1
  while b < c:
    g = c // (2 * b)
    split = lambda x: x.reshape(B, n, g, 2, b, *x.shape[3:])
    ref, num, den, kk, vv = map(split, (ref, num, den, k, v))
    mu = ref[:, :, :, 0, -1:]  # max of the left half's keys
    e = jnp.exp(kk[:, :, :, 0] - mu)
    starts = jnp.arange(g)[:, None, None] * 2 * b
    cross = C[:, starts + b + jnp.arange(b)[:, None], starts + jnp.arange(b)]  # [n, g, b, b, h]
    to_right = lambda z: jnp.einsum('ngqkh,bngkhz->bngqhz', cross, z)
    left = mu, to_right(e * vv[:, :, :, 0]), to_right(e)
    right = lse_merge(left, tuple(x[:, :, :, 1] for x in (ref, num, den)))
    ref, num, den = (jnp.stack([whole[:, :, :, 0], half], axis=3).reshape(B, n, c, *half.shape[4:])
                     for whole, half in zip((ref, num, den), right))
    b *= 2
  return ref, num, den
