"""The AFT family as pure functions of arrays (Zhai et al., arXiv 2105.14103, Sec. 3).

q, k, v: [batch, length, dim] (AFT-conv: k is [batch, length, heads]). Each returns
sigmoid(q) * sum_t' exp(K_t' + w_tt') V_t' / sum_t' exp(K_t' + w_tt') in q's dtype,
computed in float32; causal sums run over t' <= t. The pairwise bias `w` of AFT-full
and AFT-local is a [T, T] array or a pair (u, v) of [T, d'] factors, w = u v^T (Eq. 7).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.banded import NEG, banded, block_size, causal_diag, lse_merge, shift, simple_causal

_f32 = lambda *xs: [x.astype(jnp.float32) for x in xs]


def aft_simple(q, k, v, *, causal: bool):
  """Eq. 5: sigmoid(Q_t) * sum_t' softmax_t'(K) V_t'. O(T d); causal by a log-sum-exp
  scan (associative, over block summaries, and by doubling inside each block)."""
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  if causal:
    y = simple_causal(k, v)
  else:
    e = jnp.exp(k - jax.lax.stop_gradient(k.max(axis=1, keepdims=True)))
    y = (e * v).sum(axis=1, keepdims=True) / e.sum(axis=1, keepdims=True)
  return (jax.nn.sigmoid(q) * y).astype(dtype)


def aft_full(q, k, v, w, *, causal: bool, block: int = 128):
  """Eq. 2 in the paper's matmul form: exp(w - max) @ (exp(K - max) * V), one block of rows
  at a time (memory O(T d + block T), never [T, T, d]). Causal: the rows of block i take
  the blocks before it at their common maximum and the diagonal block exactly per row."""
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  B, T, d = q.shape
  c = min(block, 1 << (T - 1).bit_length())
  n = -(-T // c)
  k = jnp.pad(k, ((0, 0), (0, n * c - T), (0, 0)), constant_values=NEG)
  v = jnp.pad(v, ((0, 0), (0, n * c - T), (0, 0)))
  rows = _bias_rows(w, T, n * c, c)
  tk = jnp.arange(n * c)
  sg = jax.lax.stop_gradient
  if causal:
    kb, vb = k.reshape(B, n, c, d), v.reshape(B, n, c, d)
    mu = sg(kb.max(axis=2, keepdims=True))  # each key block's maximum
    before = shift(jax.lax.cummax(mu, axis=1), 1, axis=1, fill=NEG)  # max over blocks < i
    e = jnp.exp(kb - mu)
    z = jnp.concatenate([e * vb, e], axis=-1)
  else:
    e = jnp.exp(k - sg(k.max(axis=1, keepdims=True)))
    z = jnp.concatenate([e * v, e], axis=-1)

  def row_block(i):
    tq = i * c + jnp.arange(c)[:, None]
    valid = (tk < T) & (tk <= tq) if causal else tk < T
    wi = jnp.where(valid, rows(i * c), NEG)
    ci = jnp.where(valid, jnp.exp(wi - sg(wi.max(axis=1, keepdims=True))), 0.)
    if not causal:
      s = jnp.einsum('qk,bkz->bqz', ci, z)
      return s[..., :d] / s[..., d:]
    past = before[:, i]  # [B, 1, d]
    scale = jnp.exp(jnp.where(jnp.arange(n)[:, None, None] < i, mu - past[:, None], NEG))
    s = jnp.einsum('qk,bkz->bqz', ci, (z * jnp.concatenate([scale] * 2, -1)).reshape(B, n * c, -1))
    cut = lambda x: jax.lax.dynamic_slice_in_dim(x, i * c, c, axis=1)
    diag = causal_diag(cut(ci)[None, ..., None], cut(k)[:, None, :, None], cut(v)[:, None, :, None])
    _, num, den = lse_merge((past, s[..., :d], s[..., d:]), [x[:, 0, :, 0] for x in diag])
    return num / den

  y = jax.lax.map(jax.checkpoint(row_block), jnp.arange(n))  # [n, B, c, d]
  y = jnp.moveaxis(y, 0, 1).reshape(B, n * c, d)[:, :T]
  return (jax.nn.sigmoid(q) * y).astype(dtype)


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
  right = 0 if causal else left
  c = block_size(left, T)
  dtype = q.dtype
  q, k, v = _f32(q, k, v)
  blocks = _pair_blocks(w, T, c, (-1, 0) if causal else (-1, 0, 1))
  y = banded(k[:, :, None], v[:, :, None], blocks, left=left, right=right, causal=causal)
  return (jax.nn.sigmoid(q) * y[:, :, 0]).astype(dtype)


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
  v = v.reshape(B, T, h, d // h)
  if spatial_shape is None:
    off = s - 1 if causal else (s - 1) // 2
    left, right = min(off, T - 1), min(s - 1 - off, T - 1)
    c = block_size(max(left, right), T)
    delta = jnp.arange(c)[None, :] - jnp.arange(c)[:, None]  # t' - t inside a block
    blocks = {o: w.T[jnp.clip(delta + o * c + off, 0, s - 1)][None]
              for o in ((-1, 0) if causal else (-1, 0, 1))}
    y = banded(k[..., None], v, blocks, left=left, right=right, causal=causal)
  else:
    y = _conv2d(k, v, w, spatial_shape)
  return (jax.nn.sigmoid(q) * y.reshape(B, T, d)).astype(dtype)


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
  out = (z.sum(axis=(1, 2), keepdims=True) * jnp.exp(-mw)[head] + conv).reshape(B, T, -1)
  return out[..., :h * dh].reshape(B, T, h, dh) / out[..., h * dh:, None]


def _pair_blocks(w, T, c, offsets):
  """Bias of query block i against key block i + o: {o: [n, c, c, 1]}, w zero-padded."""
  n = -(-T // c)
  p = n * c - T
  if isinstance(w, tuple):
    u, v = (jnp.pad(x.astype(jnp.float32), ((0, p), (0, 0))).reshape(n, c, -1) for x in w)
    return {o: jnp.einsum('nqe,nke->nqk', u, shift(v, -o, axis=0))[..., None] for o in offsets}
  w = jnp.pad(w.astype(jnp.float32), ((0, p), (0, p))).reshape(n, c, n, c)
  i = jnp.arange(n)
  return {o: w[i, :, jnp.clip(i + o, 0, n - 1)][..., None] for o in offsets}


def _bias_rows(w, T, Tp, c):
  """start -> rows start .. start + c of w, [c, Tp], w zero-padded to [Tp, Tp]."""
  if isinstance(w, tuple):
    u, v = (jnp.pad(x.astype(jnp.float32), ((0, Tp - T), (0, 0))) for x in w)
    return lambda start: jax.lax.dynamic_slice_in_dim(u, start, c) @ v.T
  w = jnp.pad(w.astype(jnp.float32), ((0, Tp - T), (0, Tp - T)))
  return lambda start: jax.lax.dynamic_slice_in_dim(w, start, c)
