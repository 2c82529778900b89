"""The causal banded AFT sum (aft.banded.banded, causal=True) and its hand-written gradient.

Blocked as in aft.banded: [B, n, c, h, ·] arrays, keys k with dk in {1, dh} channels.
Every row t takes the prefix maximum r_t = max_{s <= t} k_s as its reference: it is
nondecreasing in t, so for keys s <= t every factor exp(k_s - r_t) splits at any
position p between them into exp(k_s - r_p) exp(r_p - r_t), both <= 1. Each sum is then
a linear pass with such factors (no log-sum-exp merges), and the gradient, the same sums
taken backwards in time with the transposed weights, reuses the forward's references:

  out_t = sum_s P_ts v_s,  P_ts = W_ts exp(k_s - r_t) / den_t,
  dv_s = sum_t P_ts g_t,   dk_s = v_s dv_s - sum_t P_ts g_t out_t,
  dW_ts = exp(k_s - r_t) g_t (v_s - out_t) / den_t   (summed over the channels of a head),

W being the scaled weights of aft.banded._band_weights: C0 on the own block (its lower
triangle), Cm on the previous one, w_out (uniform per row) on the blocks before it.
Three parts per block: the own block by recursive doubling (the factor splits at the
end of the left half), the previous block through one [c, c] matmul (split at the end
of that block, reference M_i), the earlier blocks through a scan over block totals.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.banded import NEG, shift


N, P = 2, 3  # the block and position axes of [B, h, n, c, ·] arrays


def _decay_scan(decay, x, reverse: bool = False):
  """y_i = x_i + decay_i y_{i-1} along the block axis (reverse: y_i = x_i + decay_i y_{i+1})."""
  op = lambda a, b: (a[0] * b[0], b[1] + b[0] * a[1])
  return jax.lax.associative_scan(op, (decay, x), axis=N, reverse=reverse)[1]


def _references(kb):
  """r: the prefix maximum of the keys per row [B, h, n, c, dk]."""
  inside = jax.lax.associative_scan(jnp.maximum, kb, axis=P)
  before = shift(jax.lax.cummax(inside[:, :, :, -1:], axis=N), 1, axis=N, fill=NEG)
  return jnp.maximum(before, inside)


def _levels(c):
  """(b, row and column indices of the lower-left [b, b] cross blocks in a [c, c] block)
  of the doubling: at level b, the rows of each right half against its left half's keys."""
  b = 1
  while b < c:
    starts = jnp.arange(c // (2 * b))[:, None, None] * 2 * b
    yield b, starts + b + jnp.arange(b)[:, None], starts + jnp.arange(b)
    b *= 2


def _halves(x, b):
  """[B, h, n, c, ·] -> (left, right) halves [B, h, n, c / 2b, b, ·] of the level-b pairs."""
  x = x.reshape(*x.shape[:P], -1, 2, b, x.shape[-1])
  return x[..., 0, :, :], x[..., 1, :, :]


def _join(half, right: bool = True):
  """Right (or left) halves [B, h, n, g, b, ·] -> [B, h, n, c, ·], zeros on the others (a
  pad, which XLA fuses into the sum that takes it)."""
  pad = [(0, 0)] * (half.ndim - 2) + [(1, 0) if right else (0, 1), (0, 0), (0, 0)]
  x = jnp.pad(half[..., None, :, :], pad)
  return x.reshape(*x.shape[:P], -1, x.shape[-1])


def _mix(C, x, transpose: bool = False):
  """sum_k C[q, k] x[k] (transpose: sum_q C[q, k] x[q]): C [h, n, .., q, k], x [B, h, n,
  .., ·, z], as one batched matmul whose operands and result keep their layouts."""
  C = jnp.broadcast_to(C, x.shape[:1] + C.shape)
  batch = tuple(range(x.ndim - 2))
  contract = (x.ndim - 2 if transpose else x.ndim - 1,), (x.ndim - 2,)
  return jax.lax.dot_general(C, x, (contract, (batch, batch)))


def _weights_grad(u, x):
  """sum over batch and channels of u_t x_s: [B, h, n, .., q, dh], [B, h, n, .., k, dk] ->
  [h, n, .., q, k] (dk = 1: one key channel serves the head's dh channels)."""
  if x.shape[-1] == 1 and u.shape[-1] != 1:
    u = u.sum(-1, keepdims=True)
  batch = tuple(range(x.ndim - 2))
  return jax.lax.dot_general(u, x, (((x.ndim - 1,), (x.ndim - 1,)), (batch, batch))).sum(0)


def _diag(C):
  """The diagonal C[.., t, t] of [h, n, c, c] as [1, h, n, c, 1]."""
  return jnp.diagonal(C, axis1=2, axis2=3)[None, ..., None]


def causal_sum(kb, vb, C0, Cm, w_out):
  """out [B, n, c, h, dh]: the causal banded ratio; see the module's docstring.
  kb [B, n, c, h, dk] (padding NEG), vb [B, n, c, h, dh], C0, Cm [n, c, c, h],
  w_out [1, n, c, h, 1] (it carries no gradient: it holds only stopped maxima).
  Computed heads first ([B, h, n, c, ·]), where every matmul is a plain batched one."""
  heads = lambda x: jnp.moveaxis(x, 3, 1)
  out = _causal_sum(heads(kb), heads(vb), jnp.moveaxis(C0, -1, 0), jnp.moveaxis(Cm, -1, 0),
                    heads(w_out))
  return jnp.moveaxis(out, 1, 3)


@jax.custom_vjp
def _causal_sum(kb, vb, C0, Cm, w_out):
  return _forward(kb, vb, C0, Cm, w_out)[0]


def _forward(kb, vb, C0, Cm, w_out):
  r = _references(kb)
  M = r[:, :, :, -1:]
  # Previous block (matmul) and block totals (the extra row of ones), at the keys' M_i.
  e = jnp.exp(kb - M)
  Cm1 = jnp.concatenate([Cm, jnp.ones_like(Cm[:, :, :1])], axis=2)
  M1 = shift(M, 1, axis=N, fill=NEG)
  step = jnp.exp(shift(M1, 1, axis=N, fill=NEG) - M1)  # exp(M_{i-2} - M_{i-1})
  into = jnp.exp(M1 - r)  # M_{i-1} -> each row's own reference
  ed = jnp.exp(kb - r)
  acc = []
  for z, zd in ((e * vb, ed * vb), (e, ed)):
    near = _mix(Cm1, shift(z, 1, axis=N))
    near, total = near[:, :, :, :-1], near[:, :, :, -1:]  # total of block i - 1 at M_{i-1}
    # Blocks <= i - 2: totals summed at M_{i-2}, then moved to M_{i-1}.
    far = step * shift(_decay_scan(step, total), 1, axis=N)
    acc.append(into * (near + w_out * far) + _diag(C0) * zd)
  # Own block: each level's right halves from their left halves.
  for b, rows, cols in _levels(kb.shape[P]):
    (kl, _), (rl, rr), (vl, _) = (_halves(x, b) for x in (kb, r, vb))
    mid = rl[..., -1:, :]
    el, er = jnp.exp(kl - mid), jnp.exp(mid - rr)
    cross = C0[:, :, rows, cols]
    acc = [a + _join(er * _mix(cross, z)) for a, z in zip(acc, (el * vl, el))]
  num, den = acc
  out = num / den
  return out, (kb, vb, C0, Cm, w_out, r, den, out)


def _backward(res, g):
  kb, vb, C0, Cm, w_out, r, den, out = res
  c = kb.shape[P]
  M = r[:, :, :, -1:]
  ys = (g / den, g * out / den)  # sums of P_ts y_t give dv and, less v dv, -dk
  e = jnp.exp(kb - M)
  # Rows of block i at M_{i-1}: against the previous block's keys (transposed matmul,
  # and its weights' gradient), and summed (w_out) for the blocks before that.
  M1 = shift(M, 1, axis=N, fill=NEG)
  into = jnp.exp(M1 - r)
  step = jnp.exp(M1 - M)  # exp(M_{i-1} - M_i)
  Cm1 = jnp.concatenate([Cm, jnp.moveaxis(w_out[0], -1, 3)], axis=3)
  ed = jnp.exp(kb - r)
  acc, dCm = [], 0.
  for y, x in zip(ys, (e * vb, -e)):
    u = into * y
    back = _mix(Cm1, u, transpose=True)
    near, total = shift(back[:, :, :, :-1], -1, axis=N), back[:, :, :, -1:]
    dCm = dCm + _weights_grad(u, shift(x, 1, axis=N))
    # Rows of blocks >= j + 2 for key block j: totals summed at M_{i-1}, moved to M_j.
    later = shift(_decay_scan(step, total, reverse=True), -1, axis=N)
    acc.append(e * (near + shift(step * later, -1, axis=N)) + _diag(C0) * ed * y)
  # Own block: the diagonal, then each level's left halves from their right halves.
  diag = (_weights_grad(ys[0][..., None, :], (ed * vb)[..., None, :]) -
          _weights_grad(ys[1][..., None, :], ed[..., None, :]))  # [h, n, c, 1, 1]
  dC0 = jnp.zeros(C0.shape, C0.dtype).at[:, :, jnp.arange(c), jnp.arange(c)].set(diag[..., 0, 0])
  for b, rows, cols in _levels(c):
    (kl, _), (rl, rr), (vl, _) = (_halves(a, b) for a in (kb, r, vb))
    mid = rl[..., -1:, :]
    el, er = jnp.exp(kl - mid), jnp.exp(mid - rr)
    cross = C0[:, :, rows, cols]
    dcross = 0.
    for i, (y, x) in enumerate(zip(ys, (el * vl, -el))):
      ur = er * _halves(y, b)[1]
      acc[i] = acc[i] + _join(el * _mix(cross, ur, transpose=True), right=False)
      dcross = dcross + _weights_grad(ur, x)
    dC0 = dC0.at[:, :, rows, cols].add(dcross)
  dv = acc[0]
  dk = vb * dv - acc[1]
  if kb.shape[-1] == 1:
    dk = dk.sum(-1, keepdims=True)
  return dk, dv, dC0, dCm, jnp.zeros_like(w_out)


_causal_sum.defvjp(_forward, _backward)
