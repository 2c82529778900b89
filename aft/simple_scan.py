"""AFT-simple's causal form with its hand-written gradient, in as few passes as it allows.

out_t = sigmoid(q_t) * r_t, r_t = sum_{s <= t} exp(k_s) v_s / sum_{s <= t} exp(k_s), per
channel. The sequence is cut into chunks of SCAN_CHUNK positions, [B, n, c, d] (a reshape,
no copy): one sequential pass over the c positions of every chunk at once sums each chunk
(at its running maximum key); an exclusive log-sum-exp scan over the n chunk totals gives
each chunk its prefix; a second pass from that prefix writes r_t and a_t = lse_{t-1} -
lse_t, lse_t = log sum_{s<=t} exp(k_s) (from sums held at the running maximum m_t, so no
reference depends on a later key). Training keeps a and the output besides the inputs.
The backward runs the same two passes in reverse time (`simple_causal_bwd`); besides the
three gradients it holds the output only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.blocks import NEG, from_blocks, lse_merge, shift, to_blocks

SCAN_CHUNK = 64  # positions per chunk


def _over_positions(body, carry, xs, bufs, reverse: bool = False):
  """For each position j of the c in [B, n, c, d] chunks (all n chunks at once):
  carry, new = body(carry, [x[:, :, j] for x in xs], [b[:, :, j] for b in bufs]), each new
  written into its buffer at j in place. Returns (carry, bufs)."""
  c = xs[0].shape[2]
  take = lambda a, j: jax.lax.dynamic_index_in_dim(a, j, axis=2, keepdims=False)

  def step(i, state):
    carry, bufs = state
    j = c - 1 - i if reverse else i
    # The barrier makes each buffer's one read a small copy taken before its update, so
    # XLA updates the buffer in place instead of copying it whole every step.
    carry, new = body(carry, [take(x, j) for x in xs], [take(b, j) for b in bufs])
    return carry, [jax.lax.dynamic_update_index_in_dim(b, u, j, axis=2)
                   for b, u in zip(bufs, new)]
  return jax.lax.fori_loop(0, c, step, (carry, list(bufs)))


def _add_key(carry, k_t, v_t):
  """(m, num, den) with key k_t, value v_t added at the new running maximum, and the old
  sum's and the new key's factors a, b at that maximum."""
  m, num, den = carry
  small = jnp.exp(-jnp.abs(k_t - m))  # one exponential: the other factor is 1
  a, b = jnp.where(k_t > m, small, 1.), jnp.where(k_t > m, 1., small)
  return (jnp.maximum(m, k_t), num * a + b * v_t, den * a + b), a, b


@jax.custom_vjp
def simple_causal(q, k, v):
  """sigmoid(q) * causal AFT-simple ratio of float32 [B, T, d] arrays (see module doc)."""
  return simple_causal_fwd(q, k, v)[0]


def simple_causal_fwd(q, k, v):
  T = k.shape[1]
  c = min(SCAN_CHUNK, T)
  kc, vc = to_blocks(k, c, NEG), to_blocks(v, c)
  zeros = jnp.zeros(kc.shape[:2] + kc.shape[3:], kc.dtype)
  empty = (jnp.full_like(zeros, NEG), zeros, zeros)
  total = _over_positions(lambda s, x, _: (_add_key(s, *x)[0], []), empty, [kc, vc], [])[0]
  upto = jax.lax.associative_scan(lse_merge, total, axis=1)  # through each chunk's end
  prefix = tuple(shift(x, 1, axis=1, fill=f) for x, f in zip(upto, (NEG, 0., 0.)))

  def write(s, x, _):
    s_new, a, b = _add_key(s, *x[:2])
    # log(S_{t-1} / S_t), S_t = sum_{s <= t} exp(k_s): as log1p, exact for tiny shares.
    step = -jnp.log1p(b / (s[2] * a))
    return s_new, [jax.nn.sigmoid(x[2]) * s_new[1] / s_new[2], step]
  out, steps = _over_positions(write, prefix, [kc, vc, to_blocks(q, c)],
                               [jnp.zeros_like(kc)] * 2)[1]
  out = from_blocks(out, T)
  ends = upto[0] + jnp.log(upto[2])  # lse at every chunk's last position
  # The backward reads out, not r: g sigmoid(q) r = g out. The layer after keeps out anyway.
  return out, (q, k, v, out, steps, ends)


def simple_causal_bwd(res, g):
  """With h = g sigmoid(q) and lse_t = log S_t: dv_s = e_s G1_s, dk_s = e_s (v_s G1_s -
  G2_s), e_s = exp(k_s - lse_s) = -expm1(a_s), a_s = lse_{s-1} - lse_s <= 0, where
  G1_s = sum_{t >= s} h_t exp(lse_s - lse_t) and G2 the same of h r, so the carry
  X_s = exp(a_s) G_s into position s - 1 runs backwards: G_s = h_s + X_{s+1}.
  A first reverse pass from zero at every chunk's end gives each chunk's own X at its
  start; a suffix scan over chunks, X_j += exp(L_{j-1} - L_j) X_{j+1} (L: lse at chunk
  ends), gives what enters each chunk; the second pass starts from it and writes dk
  (over a, as it reads it) and dv."""
  q, k, v, out, steps, ends = res
  T = k.shape[1]
  c = steps.shape[2]
  kc = to_blocks(k, c, NEG)
  qc, vc, gc, oc = (to_blocks(x, c) for x in (q, v, g, out))

  def back(carry, x, a_t):
    _, v_t, q_t, g_t, o_t = x[:5]
    g1, g2 = g_t * jax.nn.sigmoid(q_t) + carry[0], g_t * o_t + carry[1]
    decay = jnp.exp(a_t)
    return (decay * g1, decay * g2), (v_t, g1, g2, decay)

  def write(carry, x, bufs):
    carry, (v_t, g1, g2, decay) = back(carry, x, bufs[0])
    share = -jnp.expm1(bufs[0])
    # "+ 0 decay": both reads of a's slot (share, decay) then feed the slot's write, so XLA
    # orders the write after them and updates the buffer in place instead of copying it.
    return carry, [share * (v_t * g1 - g2) + 0. * decay, share * g1]

  xs = [kc, vc, qc, gc, oc]
  zeros = jnp.zeros(kc.shape[:2] + kc.shape[3:], kc.dtype)
  own = _over_positions(lambda s, x, _: (back(s, x, x[5])[0], []), (zeros, zeros),
                        xs + [steps], [], reverse=True)[0]
  link = jnp.exp(shift(ends, 1, axis=1, fill=NEG) - ends)
  later = lambda a, b: (b[0] * a[0], b[1] + b[0] * a[1], b[2] + b[0] * a[2])
  _, x1, x2 = jax.lax.associative_scan(later, (link, *own), axis=1, reverse=True)
  entering = tuple(shift(x, -1, axis=1) for x in (x1, x2))
  dk, dv = _over_positions(write, entering, xs, [steps, jnp.zeros_like(kc)], reverse=True)[1]
  return g * out * (1. - jax.nn.sigmoid(q)), from_blocks(dk, T), from_blocks(dv, T)


simple_causal.defvjp(simple_causal_fwd, simple_causal_bwd)
