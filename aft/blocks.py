"""The block layout every AFT sum shares: [B, T, ...] cut into [B, n, c, ...] blocks, shifts
along an axis, log-sum-exp merges of (ref, num, den) partial sums, and sums as matmuls."""
from __future__ import annotations

import jax
import jax.numpy as jnp

# A finite "minus infinity": exp(NEG - x) is 0 and NEG - NEG is 0, never NaN.
NEG = float(jnp.finfo(jnp.float32).min)


def lse_merge(a, b):
  """Merges two (ref, num, den) partial sums: the log-sum-exp scan's operator."""
  (ra, na, da), (rb, nb, db) = a, b
  small = jnp.exp(-jnp.abs(ra - rb))  # one exponential: the other scale is 1
  sa, sb = jnp.where(ra >= rb, 1., small), jnp.where(ra >= rb, small, 1.)
  return jnp.maximum(ra, rb), na * sa + nb * sb, da * sa + db * sb


def shift(x, s: int, axis: int, fill: float = 0.):
  """out[t] = x[t - s] along `axis`, `fill` where t - s is out of range."""
  size = x.shape[axis]
  s = max(-size, min(size, s))
  pad = [(0, 0)] * x.ndim
  pad[axis] = (max(s, 0), max(-s, 0))
  x = jax.lax.slice_in_dim(x, max(-s, 0), size - max(s, 0), axis=axis)
  return jnp.pad(x, pad, constant_values=fill)


def block_size(reach: int, length: int, minimum: int = 8) -> int:
  """Power-of-two block that covers the band (>= reach) and is not tiny."""
  c = max(reach, min(minimum, length), 1)
  return 1 << (c - 1).bit_length()


def to_blocks(x, c: int, fill: float = 0.):
  """[B, T, ...] -> [B, n, c, ...], padding T up to n c with `fill`."""
  n = -(-x.shape[1] // c)
  x = jnp.pad(x, [(0, 0), (0, n * c - x.shape[1])] + [(0, 0)] * (x.ndim - 2),
              constant_values=fill)
  return x.reshape(x.shape[0], n, c, *x.shape[2:])


def from_blocks(x, length: int):
  return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :length]


def axis_sum(x, axis: int, keepdims: bool = False):
  """x summed over `axis` as a batched matmul with ones (batch: the axes before it).

  XLA:CPU fuses a sum over a non-minor axis with the product or exponential feeding it
  into one loop that ran 6-10x slower than this (measured at [1, 256, 64, 512]); the
  matmul reads its operand once, at memory speed."""
  ones = jnp.ones(x.shape[:axis + 1], x.dtype)
  y = jnp.einsum(ones, list(range(axis + 1)), x, list(range(x.ndim)),
                 [i for i in range(x.ndim) if i != axis])
  return jnp.expand_dims(y, axis) if keepdims else y
