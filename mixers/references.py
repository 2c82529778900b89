"""Plain float64 numpy references for the mixers' operations, written from the papers'
formulas with dense masks: what the tests and benchmarks check the ops against.

Layouts follow the op each one checks: softmax-style attention [batch, length, heads,
head_dim] (as mixers.softmax), linear attention head-major [..., length, *] (as
mixers.kernel_attention), AFT [batch, length, dim] (as aft.functions).
"""
from __future__ import annotations

import numpy as np


def causal_mask(t: int) -> np.ndarray:
  """[t, t] bool: query i sees key j iff j <= i."""
  return np.tril(np.ones((t, t), bool))


def softmax(logits, weights=1.0) -> np.ndarray:
  """Softmax over the last axis in float64; key j counts weights_ij times (0 masks it)."""
  logits = np.where(np.asarray(weights) > 0, np.asarray(logits, np.float64), -np.inf)
  p = weights * np.exp(logits - logits.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True)


def attention_probs(q, k, *, causal=False, weights=1.0) -> np.ndarray:
  """softmax(q k^T / sqrt(d)) as [B, H, Tq, Tk] from [B, T, H, D]; weights as in softmax."""
  q, k = (np.asarray(a, np.float64) for a in (q, k))
  s = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  return softmax(s, weights * causal_mask(s.shape[-1]) if causal else weights)


def softmax_attention(q, k, v, *, causal=False, weights=1.0) -> np.ndarray:
  """softmax(q k^T / sqrt(d)) v over [B, T, H, D]; weights [.., H, Tq, Tk] mask or repeat keys."""
  p = attention_probs(q, k, causal=causal, weights=weights)
  return np.einsum('bhqk,bkhd->bqhd', p, np.asarray(v, np.float64))


def softmax_attention_vjp(q, k, v, dout, *, causal=False, weights=1.0):
  """(dq, dk, dv) of softmax_attention for the output cotangent dout, by hand."""
  p = attention_probs(q, k, causal=causal, weights=weights)
  q, k, v, dout = (np.asarray(a, np.float64).transpose(0, 2, 1, 3) for a in (q, k, v, dout))
  dp = dout @ v.swapaxes(-1, -2)
  ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / np.sqrt(q.shape[-1])
  back = lambda a: a.transpose(0, 2, 1, 3)
  return back(ds @ k), back(ds.swapaxes(-1, -2) @ q), back(p.swapaxes(-1, -2) @ dout)


def _linear_scores(q_feat, k_feat, k_logscale, causal):
  """(A, K e^logscale) with A = Q' (K' e^logscale)^T, masked to j <= i when causal."""
  kk = k_feat * np.exp(k_logscale)[..., None]
  a = q_feat @ np.swapaxes(kk, -1, -2)
  return (a * causal_mask(a.shape[-1]) if causal else a), kk


def linear_attention(q_feat, k_feat, v, *, causal, k_logscale=None) -> np.ndarray:
  """y_i = sum_j A_ij v_j / sum_j A_ij, A = phi(Q) (phi(K) e^k_logscale)^T, on [..., L, *]."""
  q_feat, k_feat, v = (np.asarray(a, np.float64) for a in (q_feat, k_feat, v))
  ls = np.zeros(k_feat.shape[:-1]) if k_logscale is None else k_logscale
  a, _ = _linear_scores(q_feat, k_feat, ls, causal)
  return (a @ v) / a.sum(-1, keepdims=True)


def linear_attention_vjp(q_feat, k_feat, v, k_logscale, g, *, causal):
  """(d q_feat, d k_feat, d v, d k_logscale) of linear_attention for the cotangent g, by hand."""
  q_feat, k_feat, v, k_logscale, g = (np.asarray(a, np.float64)
                                      for a in (q_feat, k_feat, v, k_logscale, g))
  a, kk = _linear_scores(q_feat, k_feat, k_logscale, causal)
  num, den = a @ v, a.sum(-1, keepdims=True)
  d_num, d_den = g / den, -(g * num).sum(-1, keepdims=True) / den ** 2
  d_a = d_num @ np.swapaxes(v, -1, -2) + d_den
  if causal:
    d_a = d_a * causal_mask(a.shape[-1])
  d_kk = np.swapaxes(d_a, -1, -2) @ q_feat
  return (d_a @ kk, d_kk * np.exp(k_logscale)[..., None], np.swapaxes(a, -1, -2) @ d_num,
          (d_kk * kk).sum(-1))


def favor_features(kernel: str, x, w) -> np.ndarray:
  """FAVOR+'s features phi(x d^-1/4) (performer/features.py, stabiliser included) in float64."""
  x = x * x.shape[-1] ** -0.25
  u = x @ w.T
  if kernel == 'relu':
    return np.maximum(u, 0) + 1e-3
  if kernel == 'hyperbolic':
    u = np.concatenate([u, -u], -1)
  u = u - 0.5 * (x * x).sum(-1, keepdims=True)
  return (np.exp(u) + 1e-6 * np.exp(u.max(-1, keepdims=True))) / np.sqrt(u.shape[-1])


def aft_full(q, k, v, w, *, causal) -> np.ndarray:
  """AFT: sigmoid(q_t) sum_t' exp(k_t' + w_tt') v_t' / sum_t' exp(k_t' + w_tt').

  w is [T, T] (shared by channels) or [T, T, d]. The max is subtracted only to allow
  extreme inputs; it cancels.
  """
  q, k, v, w = (np.asarray(x, np.float64) for x in (q, k, v, w))
  T = q.shape[1]
  logits = k[:, None] + (w[..., None] if w.ndim == 2 else w)[None]  # [B, t, t', d]
  if causal:
    logits = np.where(causal_mask(T)[None, :, :, None], logits, -np.inf)
  e = np.exp(logits - logits.max(axis=2, keepdims=True))
  return (e * v[:, None]).sum(axis=2) / e.sum(axis=2) / (1 + np.exp(-q))


def band(t: int, window: int) -> np.ndarray:
  """[t, t] bool: |t - t'| < window."""
  pos = np.arange(t)
  return np.abs(pos[:, None] - pos[None]) < window


def aft_local(q, k, v, w, *, window, causal) -> np.ndarray:
  """AFT-local: AFT-full with the bias w [T, T] kept inside the window and 0 outside it."""
  return aft_full(q, k, v, w * band(q.shape[1], window), causal=causal)


def aft_simple(q, k, v, *, causal) -> np.ndarray:
  """AFT-simple: AFT-full with w = 0."""
  return aft_full(q, k, v, np.zeros((q.shape[1],) * 2), causal=causal)


def aft_conv(q, k, v, taps, *, causal, spatial_shape=None) -> np.ndarray:
  """AFT-conv: AFT-full with w_tt' = taps[head, t' - t + off] (0 off the kernel), 1-D or 2-D."""
  h, s = taps.shape[:2]
  off = s - 1 if causal else (s - 1) // 2
  grid = np.indices(spatial_shape or (q.shape[1],)).reshape(len(spatial_shape or (1,)), -1)
  rel = grid[:, None, :] - grid[:, :, None] + off  # [axes, t, t']
  inside = ((rel >= 0) & (rel < s)).all(axis=0)
  w = np.where(inside, np.asarray(taps, np.float64)[(slice(None), *np.clip(rel, 0, s - 1))], 0.)
  w = np.repeat(np.moveaxis(w, 0, -1), q.shape[-1] // h, axis=-1)  # [T, T, d]
  return aft_full(q, np.repeat(k, q.shape[-1] // h, axis=-1), v, w, causal=causal)


def sinkhorn_attention(q, k, v, perm, *, block, causal) -> np.ndarray:
  """Soft Sinkhorn attention by explicit mixing: sorted keys/values = kron(P, I_block) [K; V]
  over the zero-padded sequence, renormalised over real tokens, weighted by their share of
  real ones; each query also sees its own block (causal: positions <= its own)."""
  q, k, v, perm = (np.asarray(a, np.float64) for a in (q, k, v, perm))
  b, t, h, d = q.shape
  n = perm.shape[-1]
  tp = n * block
  real = (np.arange(tp) < t).astype(float)
  out = np.zeros_like(q)
  for bi in range(b):
    for hi in range(h):
      mix = np.kron(perm[bi, hi], np.eye(block))
      mass = mix @ real
      safe = np.where(mass > 0, mass, 1.0)[:, None]
      pad = lambda a: np.concatenate([a[bi, :, hi], np.zeros((tp - t, d))])
      ks, vs = mix @ pad(k) / safe, mix @ pad(v) / safe
      for i in range(t):
        sl = slice(i // block * block, i // block * block + block)
        own = np.arange(tp)[sl]
        own_ok = (own < t) & ((own <= i) | (not causal))
        s = np.concatenate([ks[sl] @ q[bi, i, hi] / np.sqrt(d) + np.log(safe[sl, 0]),
                            pad(k)[sl] @ q[bi, i, hi] / np.sqrt(d)])
        s = np.where(np.concatenate([mass[sl] > 0, own_ok]), s, -np.inf)
        p = np.exp(s - s.max())
        out[bi, i, hi] = p @ np.concatenate([vs[sl], pad(v)[sl]]) / p.sum()
  return out
