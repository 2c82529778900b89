"""The AFT family as pure functions of arrays (Zhai et al., arXiv 2105.14103, Sec. 3).

q, k, v: [batch, length, dim] (AFT-conv: k is [batch, length, heads]). Each returns
sigmoid(q) * sum_t' exp(K_t' + w_tt') V_t' / sum_t' exp(K_t' + w_tt') in q's dtype,
computed in float32; causal sums run over t' <= t. The pairwise bias `w` of AFT-full
and AFT-local is a [T, T] array or a pair (u, v) of [T, d'] factors, w = u v^T (Eq. 7).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aft.banded import banded, causal_diag
from aft.blocks import NEG, axis_sum, block_size, lse_merge, shift
from aft.simple_bidirectional import simple_bidirectional
from aft.simple_scan import simple_causal
from aft.sequence_parallel import sharded_aft
from mixers import sequence_parallel as sp

_f32 = lambda *xs: [x.astype(jnp.float32) for x in xs]


def aft_simple(q, k, v, *, causal: bool):
  """Eq. 5: sigmoid(Q_t) * sum_t' softmax_t'(K) V_t'. O(T d), both forms with hand-written
  gradients: causal by passes over chunks and a log-sum-exp scan between them
  (aft/simple_scan.py), bidirectional by two sums over positions (aft/simple_bidirectional.py)."""
  if sp.shards() > 1:
    return sharded_aft(lambda q, k, v, _: aft_simple(q, k, v, causal=causal), q, k, v,
                       left=0, right=0, causal=causal)
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  return (simple_causal if causal else simple_bidirectional)(q, k, v).astype(dtype)


def aft_full(q, k, v, w, *, causal: bool, block: int = 256):
  """Eq. 2 in the paper's matmul form: exp(w - max) @ (exp(K - max) * V), by [c, c] blocks
  (memory O(T d + T c), never [T, T, d]). Bidirectional: one block of rows at a time
  against all keys. Causal: only the blocks on and below the diagonal are computed (see
  `_full_causal`)."""
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  B, T, d = q.shape
  c = min(block, 1 << (T - 1).bit_length())
  n = -(-T // c)
  k = jnp.pad(k, ((0, 0), (0, n * c - T), (0, 0)), constant_values=NEG)
  v = jnp.pad(v, ((0, 0), (0, n * c - T), (0, 0)))
  y = (_full_causal(k, v, w, T, c) if causal else _full_bidirectional(k, v, w, T, c))
  return (jax.nn.sigmoid(q) * y[:, :T]).astype(dtype)


def _full_bidirectional(k, v, w, T, c):
  B, Tp, d = k.shape
  rows = _bias_rows(w, T, Tp, c)
  valid = jnp.arange(Tp) < T
  sg = jax.lax.stop_gradient
  e = jnp.exp(k - sg(k.max(axis=1, keepdims=True)))
  z = jnp.concatenate([e * v, e], axis=-1)

  def row_block(i):
    wi = jnp.where(valid, rows(i * c), NEG)
    ci = jnp.where(valid, jnp.exp(wi - sg(wi.max(axis=1, keepdims=True))), 0.)
    s = jnp.einsum('qk,bkz->bqz', ci, z)
    return s[..., :d] / s[..., d:]

  y = jax.lax.map(jax.checkpoint(row_block), jnp.arange(Tp // c))  # [n, B, c, d]
  return jnp.moveaxis(y, 0, 1).reshape(B, Tp, d)


def _causal_schedule(n: int):
  """Static pairing of query blocks: step p handles blocks p and n-1-p, each against all
  its earlier key blocks: p + (n-1-p) = n-1 block pairs per step, (n+1)//2 steps, so the
  triangle is covered with static shapes and no work above the diagonal. Returns
  [steps, G] arrays (query block, key block, side 0/1, live) and [steps, 2] query blocks."""
  steps, width = (n + 1) // 2, max(n - 1, 1)
  rows, keys, side = (np.zeros((steps, width), np.int32) for _ in range(3))
  live = np.zeros((steps, width), bool)
  for p in range(steps):
    a, b = p, n - 1 - p
    pairs = [(a, j, 0) for j in range(a)] + ([(b, j, 1) for j in range(b)] if b != a else [])
    for g, (i, j, s_) in enumerate(pairs):
      rows[p, g], keys[p, g], side[p, g], live[p, g] = i, j, s_, True
    rows[p, len(pairs):] = a  # padding pairs (odd n, middle step): weight 0
  sides = np.stack([np.arange(steps), n - 1 - np.arange(steps)], axis=1).astype(np.int32)
  return rows, keys, side, live, sides


def _full_causal(k, v, w, T, c):
  """Causal AFT-full over the blocks on and below the diagonal only.

  Query block i takes key block j < i as C_ij @ (exp(K_j - mu_j) [V_j 1]) scaled per
  channel by exp(mu_j - past_i), mu_j the block's key maximum and past_i the maximum
  over blocks before i (no later key), and its own block exactly per row
  (`causal_diag`); C = exp(w - r) with r each row's maximum over its keys t' <= t.
  """
  B, Tp, d = k.shape
  n = Tp // c
  sg = jax.lax.stop_gradient
  kb, vb = k.reshape(B, n, c, d), v.reshape(B, n, c, d)
  mu = sg(kb.max(axis=2, keepdims=True))  # [B, n, 1, d]
  past = shift(jax.lax.cummax(mu, axis=1), 1, axis=1, fill=NEG)
  e = jnp.exp(kb - mu)
  z = jnp.concatenate([e * vb, e], axis=-1)  # [B, n, c, 2d]
  pair_bias = _pair_bias(w, T, n * c, c)
  tril = jnp.tril(jnp.ones((c, c), bool))

  def step(xs):
    ri, kj, side, live, ab = xs
    onehot = (side[:, None] == jnp.arange(2)) & live[:, None]  # [G, 2]
    wo, wd = pair_bias(ri, kj), pair_bias(ab, ab)  # [G, c, c], [2, c, c]
    r_off = jnp.where(onehot.T[:, :, None], wo.max(-1)[None], NEG).max(axis=1)  # [2, c]
    r = sg(jnp.maximum(r_off, jnp.where(tril, wd, NEG).max(-1)))
    co = jnp.where(live[:, None, None], jnp.exp(wo - r[side][:, :, None]), 0.)
    scale = jnp.exp(jnp.where(live[:, None, None], mu[:, kj] - past[:, ri], NEG))
    zo = z[:, kj] * jnp.concatenate([scale] * 2, -1)  # [B, G, c, 2d]
    s = jnp.einsum('gs,bgqz->bsqz', onehot.astype(z.dtype),
                   jnp.einsum('gqk,bgkz->bgqz', co, zo))  # [B, 2, c, 2d]
    cd = jnp.where(tril, jnp.exp(wd - r[:, :, None]), 0.)
    diag = causal_diag(cd[..., None], kb[:, ab][:, :, :, None], vb[:, ab][:, :, :, None])
    _, num, den = lse_merge((past[:, ab], s[..., :d], s[..., d:]),
                            [x[:, :, :, 0] for x in diag])
    return num / den  # [B, 2, c, d]

  rows, keys, side, live, sides = _causal_schedule(n)
  y = jax.lax.map(jax.checkpoint(step), tuple(map(jnp.asarray, (rows, keys, side, live, sides))))
  steps = sides.shape[0]
  block = np.arange(n)  # block i is side 0 of step i, or side 1 of step n-1-i
  y = y[np.where(block < steps, block, n - 1 - block), :, (block >= steps).astype(np.int32)]
  return jnp.moveaxis(y, 0, 1).reshape(B, Tp, d)


def aft_local(q, k, v, w, *, window: int, causal: bool):
  """Eq. 4: w_tt' as learned for |t - t'| < window, 0 (not -inf) elsewhere. O(T window d),
  block by block: keys in blocks beyond the neighbours enter through sums over block
  summaries, the rest through [c, c] matmuls with weights exp(w) inside the window and 1
  outside. This equals the paper's global sum plus an (exp(w) - 1) band correction without
  subtracting anything, so the normaliser cannot cancel to zero or below.
  window = 0 is AFT-simple; window >= T is AFT-full."""
  T = q.shape[1]
  if window == 0:
    return aft_simple(q, k, v, causal=causal)
  left = min(window, T) - 1
  if sp.shards() > 1:
    def mix(q, k, v, positions, *w):
      return aft_local(q, k, v, _bias_at(w, positions, T), window=window, causal=causal)
    # The band unclipped: the summaries of far keys must lie outside every device's band.
    return sharded_aft(mix, q, k, v, w if isinstance(w, tuple) else (w,), left=window - 1,
                       right=window - 1, causal=causal)
  right = 0 if causal else left
  c = block_size(left, T)
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  blocks = _pair_blocks(w, T, c, (-1, 0) if causal else (-1, 0, 1))
  y = banded(q[:, :, None], k[:, :, None], v[:, :, None], blocks, left=left, right=right,
             causal=causal)
  return y[:, :, 0].astype(dtype)


def aft_conv(q, k, v, w, *, causal: bool, spatial_shape: tuple[int, int] | None = None):
  """Eq. 6 with h = k.shape[-1] heads: each head's filter w[i] is shared by its d/h channels.

  w: [h, s] taps in 1-D, [h, s, s] in 2-D over the grid spatial_shape = (H, W) (T = H W,
  row-major, bidirectional only). Tap j looks at t' = t + j - off with off = (s - 1) // 2,
  or off = s - 1 when causal (a causal kernel). 1-D runs through the same banded sums as
  AFT-local; 2-D is the paper's global sum plus a depthwise conv with exp(w) - 1.
  """
  dtype = q.dtype
  q, k, v, w = _f32(q, k, v, w)
  B, T, d = q.shape
  h, s = w.shape[:2]
  if spatial_shape is not None:
    sp.unsupported('aft_conv (2-D, spatial_shape)')
    y = _conv2d(k, v.reshape(B, T, h, d // h), w, spatial_shape)
    return (jax.nn.sigmoid(q) * y.reshape(B, T, d)).astype(dtype)
  off = s - 1 if causal else (s - 1) // 2
  if sp.shards() > 1:  # taps depend on t' - t only: positions are not needed
    return sharded_aft(lambda q, k, v, _, w: aft_conv(q, k, v, w, causal=causal), q, k, v,
                       (w,), left=off, right=s - 1 - off, causal=causal).astype(dtype)
  left, right = min(off, T - 1), min(s - 1 - off, T - 1)
  c = block_size(max(left, right), T)
  delta = jnp.arange(c)[None, :] - jnp.arange(c)[:, None]  # t' - t inside a block
  blocks = {o: w.T[jnp.clip(delta + o * c + off, 0, s - 1)][None]
            for o in ((-1, 0) if causal else (-1, 0, 1))}
  heads = lambda x: x.reshape(B, T, h, d // h)
  y = banded(heads(q), k[..., None], heads(v), blocks, left=left, right=right, causal=causal)
  return y.reshape(B, T, d).astype(dtype)


def conv_bias(w, gamma, beta, eps: float = 1e-5):
  """Eq. 8: w_i <- gamma_i (w_i - mean(w_i)) / std(w_i) + beta_i per head (w [h, ...taps])."""
  axes = tuple(range(1, w.ndim))
  w = (w - w.mean(axes, keepdims=True)) / jnp.sqrt(w.var(axes, keepdims=True) + eps)
  shape = (-1,) + (1,) * (w.ndim - 1)
  return gamma.reshape(shape) * w + beta.reshape(shape)


def _conv2d(k, v, w, spatial_shape):
  """Bidirectional 2-D AFT-conv, the paper's form at max w = mw:
  exp(-mw) * global sum + depthwise conv with exp(w - mw) - exp(-mw)."""
  B, T, h, dh = v.shape
  H, W = spatial_shape
  s = w.shape[1]
  e = jnp.exp(k - jax.lax.stop_gradient(k.max(axis=1, keepdims=True)))[..., None]
  z = jnp.concatenate([(e * v).reshape(B, T, h * dh), e[..., 0]], -1).reshape(B, H, W, -1)
  mw = jax.lax.stop_gradient(jnp.maximum(w.max(axis=(1, 2)), 0.))
  head = jnp.concatenate([jnp.repeat(jnp.arange(h), dh), jnp.arange(h)])  # channel -> head
  taps = (jnp.exp(w - mw[:, None, None]) - jnp.exp(-mw)[:, None, None])[head]
  off = (s - 1) // 2
  conv = jax.lax.conv_general_dilated(
      z, jnp.moveaxis(taps, 0, -1)[:, :, None, :], (1, 1), [(off, s - 1 - off)] * 2,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=z.shape[-1])
  total = axis_sum(z.reshape(B, T, -1), 1)[:, None, None]
  out = (total * jnp.exp(-mw)[head] + conv).reshape(B, T, -1)
  return out[..., :h * dh].reshape(B, T, h, dh) / out[..., h * dh:, None]


def _bias_at(w, positions, T):
  """The bias (dense [T, T] in a 1-tuple, or factors (u, v)) between these global positions;
  positions outside 0..T-1 (padding, halos past the ends) take a clipped row: their keys
  have weight 0."""
  i = jnp.clip(positions, 0, T - 1)
  return w[0][i][:, i] if len(w) == 1 else (w[0][i], w[1][i])


def _pair_blocks(w, T, c, offsets):
  """Bias of query block i against key block i + o: {o: [n, c, c, 1]} (clipped at the ends,
  where banded() multiplies them by zero-filled keys)."""
  n = -(-T // c)
  pair_bias, i = _pair_bias(w, T, n * c, c), jnp.arange(n)
  return {o: pair_bias(i, jnp.clip(i + o, 0, n - 1))[..., None] for o in offsets}


def _pair_bias(w, T, Tp, c):
  """(query blocks [G], key blocks [G]) -> [G, c, c] blocks of w, w zero-padded to [Tp, Tp]."""
  n = Tp // c
  if isinstance(w, tuple):
    u, v = (jnp.pad(x.astype(jnp.float32), ((0, Tp - T), (0, 0))).reshape(n, c, -1) for x in w)
    return lambda i, j: jnp.einsum('gqe,gke->gqk', u[i], v[j])
  w = jnp.pad(w.astype(jnp.float32), ((0, Tp - T), (0, Tp - T))).reshape(n, c, n, c)
  return lambda i, j: w[i, :, j]


def _bias_rows(w, T, Tp, c):
  """start -> rows start .. start + c of w, [c, Tp], w zero-padded to [Tp, Tp]."""
  if isinstance(w, tuple):
    u, v = (jnp.pad(x.astype(jnp.float32), ((0, Tp - T), (0, 0))) for x in w)
    return lambda start: jax.lax.dynamic_slice_in_dim(u, start, c) @ v.T
  w = jnp.pad(w.astype(jnp.float32), ((0, Tp - T), (0, Tp - T)))
  return lambda start: jax.lax.dynamic_slice_in_dim(w, start, c)
