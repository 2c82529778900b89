"""AFT-simple's bidirectional form with its hand-written gradient.

out_t = sigmoid(q_t) * r, r = sum_s w_s v_s, w_s = exp(k_s) / sum_s' exp(k_s') per channel:
one r for every position. With h = g sigmoid(q) and G = sum_t h_t, the gradient is
dq = g out (1 - sigmoid(q)), dv_s = w_s G, dk_s = w_s (v_s - r) G. Autodiff of the plain
form summed h over the position axis (not the minor one) in a fused loop that XLA:CPU ran
about 10x slower than this, and kept full-size broadcasts: 340 ms and 337 MB against
this form's (see the README's cores table) at L = 16384, d = 512. Sums over positions go
through aft.blocks.axis_sum (a matmul with ones).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.blocks import axis_sum


@jax.custom_vjp
def simple_bidirectional(q, k, v):
  """sigmoid(q) * the softmax-over-positions average of v, float32 [B, T, d] arrays."""
  return simple_bidirectional_fwd(q, k, v)[0]


def _weights(k):
  """(exp(k - max) [B, T, d], its sum over positions [B, 1, d]); max over positions."""
  e = jnp.exp(k - k.max(axis=1, keepdims=True))
  return e, axis_sum(e, 1, keepdims=True)


def simple_bidirectional_fwd(q, k, v):
  e, den = _weights(k)
  r = axis_sum(e * v, 1, keepdims=True) / den
  return jax.nn.sigmoid(q) * r, (q, k, v, r)


def simple_bidirectional_bwd(res, g):
  q, k, v, r = res
  gate = jax.nn.sigmoid(q)
  e, den = _weights(k)  # recomputed: one exponential pass instead of a kept [B, T, d] array
  G = axis_sum(g * gate, 1, keepdims=True) / den  # divided once here, not per position
  return g * gate * (1. - gate) * r, e * (v - r) * G, e * G


simple_bidirectional.defvjp(simple_bidirectional_fwd, simple_bidirectional_bwd)
