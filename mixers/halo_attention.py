"""Sparse attention with a finite reach, the length split over sequence devices: halos.

A pattern whose allowed keys all lie within q - back .. q + ahead (local blocks, a
Longformer window without global positions: `Pattern.reach`) needs on each device only
its own keys and `back` positions of the previous device's (`ahead` of the next's). Each
chunk of c queries attends the c + back + ahead keys around it under the pattern's own
`allowed` mask on global positions (mixers.block_sparse.masked_attention: float32, each
row's maximum from its allowed keys), recomputed in the backward pass. Collectives: the
halos, (back + ahead) positions of keys and values per device and layer.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mixers import sequence_parallel as sp
from mixers.block_sparse import masked_attention


def halo_attention(q, k, v, pattern, *, chunk_size: int = 128):
  """Attention of q, k, v: [B, T, H, D] restricted to `pattern` (with a reach), length sharded."""
  back, ahead = pattern.reach()
  return sp.sharded(functools.partial(_local, allowed=pattern.allowed, back=back, ahead=ahead,
                                      chunk_size=chunk_size), (q, k, v))


def _local(shard, q, k, v, *, allowed, back, ahead, chunk_size):
  B, size, H, D = q.shape
  c = min(chunk_size, size)
  nc = -(-size // c)
  extend = lambda x: jnp.concatenate(
      [sp.halo(x, back, shard), x, sp.halo(x, ahead, shard, after=True),
       jnp.zeros((B, nc * c - size, H, D), x.dtype)], 1).transpose(0, 2, 1, 3)
  kx, vx = extend(k), extend(v)  # [B, H, back + nc c + ahead, D]
  qc = jnp.pad(q, ((0, 0), (0, nc * c - size), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  width = c + back + ahead

  def chunk(i):
    start = i * c
    q_pos = shard.offset + start + jnp.arange(c)
    k_pos = shard.offset + start - back + jnp.arange(width)
    mask = allowed(q_pos[None, :, None], k_pos[None, None, :]) & (k_pos >= 0) & (k_pos < shard.length)
    keys = [jax.lax.dynamic_slice_in_dim(x, start, width, axis=2) for x in (kx, vx)]
    return masked_attention(jax.lax.dynamic_slice_in_dim(qc, start, c, axis=2), *keys, mask)

  y = jax.lax.map(jax.checkpoint(chunk), jnp.arange(nc))  # [nc, B, H, c, D]
  y = jnp.moveaxis(y, 0, 2).reshape(B, H, nc * c, D)[:, :, :size]
  return y.transpose(0, 2, 1, 3).astype(q.dtype)
