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

import functools

import jax
import jax.numpy as jnp

from aft.blocks import NEG, shift


GROUP = 128  # positions per step of the loop over groups of blocks: its arrays stay in cache
P = 3  # the position axis of a group's [G, B, h, c, ·] arrays (G blocks)


def _decay_scan(decay, x, start, reverse: bool = False):
  """y_i = x_i + decay_i y_{i-1} over the G blocks, y_{-1} = start (reverse: y_i = x_i +
  decay_i y_{i+1}, y_G = start)."""
  op = lambda a, b: (a[0] * b[0], b[1] + b[0] * a[1])
  decays, y = jax.lax.associative_scan(op, (decay, x), axis=0, reverse=reverse)
  return y + decays * start


def _with(first, x, last: bool = False):
  """[first, x_0 .. x_{G-2}] (last: [x_1 .. x_{G-1}, first]): x shifted by one block."""
  return jnp.concatenate([x[1:], first[None]] if last else [first[None], x[:-1]], axis=0)


def _levels(c):
  """(b, row and column indices of the lower-left [b, b] cross blocks in a [c, c] block)
  of the doubling: at level b, the rows of each right half against its left half's keys."""
  b = 1
  while b < c:
    starts = jnp.arange(c // (2 * b))[:, None, None] * 2 * b
    yield b, starts + b + jnp.arange(b)[:, None], starts + jnp.arange(b)
    b *= 2


def _halves(x, b):
  """[G, B, h, c, ·] -> (left, right) halves [G, B, h, c / 2b, b, ·] of the level-b pairs."""
  x = x.reshape(*x.shape[:P], -1, 2, b, x.shape[-1])
  return x[..., 0, :, :], x[..., 1, :, :]


def _add_half(acc, half, b, right: bool = True):
  """acc [G, B, h, c, .] plus half [G, B, h, g, b, .] on the right (or left) halves of
  level b, added into their slots: the zero-padded form (acc + pad(half)) fused into
  loops XLA:CPU did not vectorise; this halved the core's time at L = 16384."""
  a = acc.reshape(*acc.shape[:P], -1, 2, b, acc.shape[-1])
  return a.at[..., int(right), :, :].add(half).reshape(acc.shape)


def _mix(C, x, transpose: bool = False):
  """sum_k C[q, k] x[k] (transpose: sum_q C[q, k] x[q]): C [G, h, .., q, k], x [G, B, h,
  .., ·, z], as one batched matmul whose operands and result keep their layouts."""
  C = jnp.broadcast_to(C[:, None], x.shape[:2] + C.shape[1:])
  batch = tuple(range(x.ndim - 2))
  contract = (x.ndim - 2 if transpose else x.ndim - 1,), (x.ndim - 2,)
  return jax.lax.dot_general(C, x, (contract, (batch, batch)))


def _weights_grad(u, x):
  """sum over batch and channels of u_t x_s: [G, B, h, .., q, dh], [G, B, h, .., k, dk] ->
  [G, h, .., q, k] (dk = 1: one key channel serves the head's dh channels)."""
  if x.shape[-1] == 1 and u.shape[-1] != 1:
    u = u.sum(-1, keepdims=True)
  batch = tuple(range(x.ndim - 2))
  return jax.lax.dot_general(u, x, (((x.ndim - 1,), (x.ndim - 1,)), (batch, batch))).sum(1)


def _diag(C):
  """The diagonal C[.., t, t] of [G, h, c, c] as [G, 1, h, c, 1]."""
  return jnp.diagonal(C, axis1=2, axis2=3)[:, None, :, :, None]


def causal_sum(qb, kb, vb, C0, Cm, w_out):
  """out [B, n, c, h, dh]: sigmoid(q) times the causal banded ratio; see the module's
  docstring. qb, vb [B, n, c, h, dh], kb [B, n, c, h, dk] (padding NEG), C0, Cm [n, c, c, h],
  w_out [1, n, c, h, 1] (it carries no gradient: it holds only stopped maxima). The gate
  is applied inside, group by group, forwards and backwards: outside, its product with
  the incoming gradient and the gate itself were three more full passes, each into a
  fresh [B, T, d] array.

  A loop over groups of G blocks (GROUP positions) whose intermediates stay in cache:
  each group is sliced from the [B, T, h ·] arrays in place and transposed to
  [G, B, h, c, ·], so inside it every matmul is a plain batched one, and its results are
  written back in place (transposing whole arrays into a scan's layout cost a copy of
  each; so did a loop operand with axes of size 1 that XLA laid out apart from the
  array's own layout). n is padded to a multiple of G with blocks that reach no real row."""
  B, n, c, h, dh = vb.shape
  G = max(1, min(n, GROUP // c))
  pad = -n % G
  big = lambda x, fill=0.: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * 3,
                                   constant_values=fill).reshape(B, (n + pad) * c, -1)
  small = lambda x, axes: jnp.pad(jnp.transpose(x, axes), [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  out = _causal_sum(big(qb), big(kb, NEG), big(vb), small(C0, (0, 3, 1, 2)),
                    small(Cm, (0, 3, 1, 2)), small(w_out, (1, 0, 3, 2, 4)), G, pad > 0)
  return out.reshape(B, n + pad, c, h, dh)[:, :n]


def _over_groups(group, carry, big, small, G, c, h, big_out, reverse: bool = False):
  """carry, ys = group(carry, xs) for each group of G blocks of c positions, in order (or
  reversed). xs: each of `big` ([B, N c, h z]) sliced and laid out as [G, B, h, c, z],
  then each of `small` (block-major [N, ...]) sliced to [G, ...]. Each y is written in
  place into a [B, N c, h z] array where big_out says so, else into a block-major one.
  Returns (carry, [those arrays])."""
  B, Nc = big[0].shape[:2]
  count, span = Nc // (G * c), G * c

  def take_big(i):
    part = lambda x: jax.lax.dynamic_slice_in_dim(x, i * span, span, axis=1)
    return [jnp.transpose(part(x).reshape(B, G, c, h, -1), (1, 0, 3, 2, 4)) for x in big]

  def take_small(i):
    return [jax.lax.dynamic_slice_in_dim(x, i * G, G, axis=0) for x in small]

  take = lambda i: take_big(i) + take_small(i)

  def put(buf, y, i, b):
    if b:
      y = jnp.transpose(y, (1, 0, 3, 2, 4)).reshape(B, span, -1)
    return jax.lax.dynamic_update_slice_in_dim(buf, y, i * (span if b else G), axis=int(b))

  shapes = jax.eval_shape(group, carry, take(0))[1]
  bufs = [jnp.zeros((B, Nc, h * y.shape[-1]) if b else (count * G,) + y.shape[1:], y.dtype)
          for y, b in zip(shapes, big_out)]

  index = lambda j: count - 1 - j if reverse else j

  def body(j, state):
    carry, bufs, here = state
    i = index(j)
    carry, ys = group(carry, take_big(i) + here)
    # The next group's small slices ride in the loop state: read from there, they are
    # arrays, where a slice fused into each of its consumers was recomputed in each.
    nxt = take_small(index(jnp.minimum(j + 1, count - 1)))
    return carry, [put(buf, y, i, b) for buf, y, b in zip(bufs, ys, big_out)], nxt
  return jax.lax.fori_loop(0, count, body, (carry, bufs, take_small(index(0))))[:2]


def _rows(k, M1):
  """Each row's reference r (the prefix maximum of the keys) from the block's start M1."""
  return jnp.maximum(M1, jax.lax.associative_scan(jnp.maximum, k, axis=P))


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _causal_sum(qb, kb, vb, C0, Cm, w_out, G, padded):
  return _forward(qb, kb, vb, C0, Cm, w_out, G, padded)[0]


def _forward(qb, kb, vb, C0, Cm, w_out, G, padded):
  Cm1 = jnp.concatenate([Cm, jnp.ones_like(Cm[:, :, :1])], axis=2)  # + a row for the total

  def group(carry, xs):
    (Ma, Mb), parts = carry  # M of the previous group's last two blocks
    q, k, v, C0, Cm1, w_out = xs
    # M_i: the prefix maximum of the keys at the end of block i (NEG before the first).
    M = jnp.maximum(Mb, jax.lax.cummax(k.max(axis=P, keepdims=True), axis=0))
    M1 = _with(Mb, M)
    step = jnp.exp(_with(Ma, M1) - M1)  # moves block sums from M_{i-2} to M_{i-1}
    r = _rows(k, M1)
    e, ed, into = jnp.exp(k - M), jnp.exp(k - r), jnp.exp(M1 - r)
    acc, parts_out = [], []
    for z, zd, (last, Q0) in zip((e * v, e), (ed * v, ed), parts):
      # The previous block by a matmul at M_{i-1}, with its total in the extra row.
      near = _mix(Cm1, _with(last, z))
      near, total = near[..., :-1, :], near[..., -1:, :]
      # Blocks <= i - 2: Q_i, the sum of the blocks <= i - 1 at M_{i-1}, by a scan.
      Q = _decay_scan(step, total, Q0)
      far = step * _with(Q0, Q)
      acc.append(into * (near + w_out * far) + _diag(C0) * zd)
      parts_out.append((z[-1], Q[-1]))
    # The own block: each level's right halves from their left halves.
    for b, rows, cols in _levels(k.shape[P]):
      (kl, _), (rl, rr), (vl, _) = (_halves(x, b) for x in (k, r, v))
      mid = rl[..., -1:, :]
      el, er = jnp.exp(kl - mid), jnp.exp(mid - rr)
      cross = C0[:, :, rows, cols]
      acc = [_add_half(a, er * _mix(cross, z), b) for a, z in zip(acc, (el * vl, el))]
    num, den = acc
    ratio = num / den
    carry = (jnp.concatenate([M1, M], 0)[-2], M[-1]), tuple(parts_out)
    return carry, (jax.nn.sigmoid(q) * ratio, ratio, den, M)

  B, h, c = kb.shape[0], C0.shape[1], C0.shape[2]
  dk, dh = kb.shape[-1] // h, vb.shape[-1] // h
  neg = jnp.full((B, h, 1, dk), NEG, kb.dtype)
  parts = tuple((jnp.zeros((B, h, c, z), kb.dtype), jnp.zeros((B, h, 1, z), kb.dtype))
                for z in (dh, dk))
  _, (gated, out, den, M) = _over_groups(group, ((neg, neg), parts), [qb, kb, vb],
                                         [C0, Cm1, w_out], G, c, h, (True, True, True, False))
  return gated, (qb, kb, vb, C0, Cm1, w_out, den, out, M)


def _backward(G, padded, res, g):
  qb, kb, vb, C0, Cm1, w_out, den, out, M = res
  M1 = shift(M, 1, axis=0, fill=NEG)
  step = jnp.exp(M1 - M)  # moves row sums from M_i to M_{i-1}
  step_next = shift(step, -1, axis=0)
  # The rows of block i reach key block i - 1 through Cm_i and earlier ones through w_out.
  Cmw = jnp.concatenate([Cm1[:, :, :-1], w_out[:, 0]], axis=3)

  def group(carry, xs):
    q, k, v, g, den, out, C0, Cmw, M, M1, step, step_next = xs
    r = _rows(k, M1)
    e, ed, into = jnp.exp(k - M), jnp.exp(k - r), jnp.exp(M1 - r)
    gate = jax.nn.sigmoid(q)
    dq = g * out * gate * (1. - gate)
    g = g * gate  # the ratio's incoming gradient
    ys = (g / den, g * out / den)  # sums of P_ts y_t give dv and, less v dv, -dk
    acc, carry_out, dCm = [], [], 0.
    for y, x, (u0, back0, R0, R1) in zip(ys, (e * v, -e), carry):
      # Rows of block i at M_{i-1}: against key block i - 1 (the transposed matmul, and the
      # weights' gradient), and summed by w_out for the key blocks before it.
      u = into * y
      back = _mix(Cmw, u, transpose=True)
      back, total = back[..., :-1, :], back[..., -1:, :]
      dCm = dCm + _weights_grad(_with(u0, u, last=True), x)  # [j] holds Cm_{j+1}'s
      # R_i: the rows of blocks >= i at M_{i-1}; key block j takes R_{j+2} at M_j.
      R = _decay_scan(step, total, R0, reverse=True)
      R2 = jnp.concatenate([R[2:], R0[None], R1[None]], axis=0)[-R.shape[0]:]
      acc.append(e * (_with(back0, back, last=True) + step_next * R2) + _diag(C0) * ed * y)
      carry_out.append((u[0], back[0], R[0], jnp.concatenate([R, R0[None]], 0)[1]))
    # The own block: the diagonal, then each level's left halves from their right halves.
    c = k.shape[P]
    diag = (_weights_grad(ys[0][..., None, :], (ed * v)[..., None, :]) -
            _weights_grad(ys[1][..., None, :], ed[..., None, :]))  # [G, h, c, 1, 1]
    dC0 = jnp.zeros(C0.shape, C0.dtype).at[:, :, jnp.arange(c), jnp.arange(c)].set(
        diag[..., 0, 0])
    for b, rows, cols in _levels(c):
      (kl, _), (rl, rr), (vl, _) = (_halves(a, b) for a in (k, r, v))
      mid = rl[..., -1:, :]
      el, er = jnp.exp(kl - mid), jnp.exp(mid - rr)
      cross = C0[:, :, rows, cols]
      dcross = 0.
      for i, (y, x) in enumerate(zip(ys, (el * vl, -el))):
        ur = er * _halves(y, b)[1]
        acc[i] = _add_half(acc[i], el * _mix(cross, ur, transpose=True), b, right=False)
        dcross = dcross + _weights_grad(ur, x)
      dC0 = dC0.at[:, :, rows, cols].add(dcross)
    dv = acc[0]
    dk = v * dv - acc[1]
    if k.shape[-1] == 1:
      dk = dk.sum(-1, keepdims=True)
    return tuple(carry_out), (dq, dk, dv, dC0, dCm)

  B, h, c = vb.shape[0], C0.shape[1], C0.shape[2]
  z = lambda rows: jnp.zeros((B, h, rows, vb.shape[-1] // h), vb.dtype)
  start = tuple((z(c), z(c), z(1), z(1)) for _ in range(2))
  if padded:  # rows of padding blocks (no keys; g is 0 there)
    heads = lambda x: x.reshape(B, -1, h, x.shape[-1] // h)
    out = jnp.where(heads(den) > 0, heads(out), 0.).reshape(out.shape)
    den = jnp.where(den > 0, den, 1.)
  _, (dq, dk, dv, dC0, dCm) = _over_groups(
      group, start, [qb, kb, vb, g, den, out], [C0, Cmw, M, M1, step, step_next], G,
      c, h, (True, True, True, False, False), reverse=True)
  return dq, dk, dv, dC0, shift(dCm, 1, axis=0), jnp.zeros_like(w_out)


_causal_sum.defvjp(_forward, _backward)
