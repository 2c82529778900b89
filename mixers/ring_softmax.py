"""Exact softmax attention with the length split over sequence devices: ring attention.

Each device keeps its queries and passes its key/value block once around the ring
(mixers/sequence_parallel.py `ring`); every block it receives is folded into running
(maximum, normaliser, output) rows, the online-softmax merge of the chunked path
(mixers/chunked_softmax.py), in float32. Causal: blocks from later devices are skipped
(a lax.cond, so no work), the own block is masked at the diagonal, earlier blocks are
whole. Bidirectional: keys past the sequence's end (padding) are masked.

Memory per device: O(T/n d + chunk_size^2) per head (query chunks of about
chunk_size^2 n / T rows scored against a block at a time, each recomputed in the backward
pass); the collectives move n - 1 key/value
blocks of T/n positions per device and layer (their transposes again for the gradient).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mixers import sequence_parallel as sp


def ring_softmax_attention(q, k, v, *, causal: bool, chunk_size: int = 512):
  """softmax(q k^T / sqrt(dh)) v over [batch, length, heads, dh] arrays, length sharded."""
  return sp.sharded(functools.partial(_local, causal=causal, chunk_size=chunk_size), (q, k, v))


def _fold(carry, q, k, v, mask):
  """Folds one key block into the running rows of one query chunk; q [B, c, H, dh] (scaled),
  k, v [B, S, H, dh], mask [c, S]. Maxima carry no gradient (they cancel in the ratio)."""
  m, l, acc = carry
  s = jnp.where(mask, jnp.einsum('bqhd,bkhd->bhqk', q, k), -jnp.inf)
  m_new = jax.lax.stop_gradient(jnp.maximum(m, s.max(-1)))
  m_safe = jnp.where(m_new == -jnp.inf, 0., m_new)  # rows with no key yet stay empty
  p, scale = jnp.exp(s - m_safe[..., None]), jnp.exp(m - m_safe)
  return m_new, l * scale + p.sum(-1), acc * scale[..., None] + jnp.einsum(
      'bhqk,bkhd->bhqd', p, v)


def _local(shard, q, k, v, *, causal, chunk_size):
  B, size, H, dh = q.shape
  dtype = q.dtype
  # Query chunks of c rows against a whole block of `size` keys: c size <= chunk_size^2
  # scores at a time, the chunked path's budget (at least min(chunk_size, 16) rows).
  c = min(size, max(min(chunk_size, 16), chunk_size ** 2 // size))
  nc = -(-size // c)
  q = jnp.pad(q.astype(jnp.float32) * dh ** -0.5, ((0, 0), (0, nc * c - size), (0, 0), (0, 0)))
  q = jnp.moveaxis(q.reshape(B, nc, c, H, dh), 1, 0)  # [nc, B, c, H, dh]
  q_pos = (shard.offset + jnp.arange(nc * c)).reshape(nc, c)
  carry = (jnp.full((nc, B, H, c), -jnp.inf), jnp.zeros((nc, B, H, c)),
           jnp.zeros((nc, B, H, c, dh)))

  def step(carry, block, source):
    kj, vj = block
    k_pos = source * size + jnp.arange(size)
    mask = jnp.broadcast_to(k_pos < shard.length, (nc, c, size))
    if causal:
      mask &= k_pos <= q_pos[..., None]
    one = jax.checkpoint(lambda a: _fold(a[1:4], a[0], kj, vj, a[4]))
    fold = lambda carry: jax.lax.map(one, (q, *carry, mask))
    if causal:  # a later device's keys are all in the future
      return jax.lax.cond(source <= shard.index, fold, lambda carry: carry, carry)
    return fold(carry)

  kv = tuple(a.astype(jnp.float32) for a in (k, v))
  _, l, acc = sp.ring(step, carry, kv, shard)
  out = acc / jnp.where(l == 0, 1., l)[..., None]  # [nc, B, H, c, dh]
  out = jnp.moveaxis(out, 0, 2).reshape(B, H, nc * c, dh)[:, :, :size]
  return jnp.swapaxes(out, 1, 2).astype(dtype)
