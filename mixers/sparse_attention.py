"""The sparse-pattern mixers: multi-head softmax attention on a fixed pattern, one engine.

Registered as local, strided, global, longformer and bigbird. Each wraps a
pattern of mixers/sparse_patterns.py in the same projections as the softmax
baseline and runs mixers/block_sparse.py. Patterns whose definition is a formula
on positions decode (local, strided, global, longformer): the cache holds the
global positions plus a ring buffer of the last positions the pattern can still
see, and each step applies the same `allowed` mask as the parallel form.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers import sparse_patterns as patterns
from mixers.base import Mixer, check_length
from mixers import sequence_parallel as sp
from mixers.block_sparse import block_sparse_attention, masked_attention
from mixers.halo_attention import halo_attention
from mixers.layers import linear
from mixers.registry import register


class SparseAttention(Mixer):
  """Projections around the block-sparse engine; subclasses choose the pattern.

  With the length split over sequence devices, patterns with a finite reach (local, a
  Longformer window without global positions) run with halos; the others refuse."""

  sequence_parallel = True

  def __init__(self, pattern: patterns.Pattern, *, dim: int, max_len: int, rngs: nnx.Rngs):
    self.name, h = pattern.name, pattern.num_heads
    if dim % h:
      raise ValueError(f'{self.name}: dim={dim} is not divisible by num_heads={h}')
    self.pattern, self.num_heads, self.max_len, self.causal = pattern, h, max_len, pattern.causal
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, self.name)
    if sp.shards() > 1 and self.pattern.reach() is None:
      sp.unsupported(self.name)
    q, k, v = (self._heads(f(x)) for f in (self.q, self.k, self.v))
    if sp.shards() > 1:
      y = halo_attention(q, k, v, self.pattern, chunk_size=self.pattern.block)
    else:
      y = block_sparse_attention(q, k, v, self.pattern.layout(x.shape[1]))
    return self.out(y.reshape(x.shape))

  def init_cache(self, batch: int, max_len: int):
    ring = self.pattern.decode_ring(max_len)
    if ring is None:
      raise NotImplementedError(f'{self.name} has no decoding step')
    if not self.causal:
      raise ValueError(f'{self.name}: decoding needs causal=True')
    check_length(max_len, self.max_len, self.name)
    slots = min(self.pattern.global_positions() + ring, max_len)
    dh = self.q.out_features // self.num_heads
    zeros = jnp.zeros((batch, slots, self.num_heads, dh), jnp.float32)
    return {'k': zeros, 'v': zeros, 'pos': jnp.full((slots,), -1, jnp.int32),
            'index': jnp.zeros((), jnp.int32)}

  def step(self, x_t, cache):
    """One position: store k, v in its slot (global ones fixed, the rest a ring), then attend."""
    q, k, v = (self._heads(f(x_t)) for f in (self.q, self.k, self.v))
    t, slots = cache['index'], cache['pos'].shape[0]
    g = min(self.pattern.global_positions(), slots - 1)  # a full cache: slot = t either way
    slot = jnp.where(t < g, t, g + (t - g) % (slots - g))
    ks, vs = (jax.lax.dynamic_update_slice_in_dim(cache[n], x.astype(cache[n].dtype), slot, 1)
              for n, x in (('k', k), ('v', v)))
    pos = cache['pos'].at[slot].set(t)
    mask = (pos >= 0) & self.pattern.allowed(t[None, None], pos[None])  # [H or 1, slots]
    y = masked_attention(*(a.transpose(0, 2, 1, 3) for a in (q, ks, vs)), mask[:, None])
    y = y.transpose(0, 2, 1, 3).astype(x_t.dtype)
    return self.out(y.reshape(x_t.shape)), {'k': ks, 'v': vs, 'pos': pos, 'index': t + 1}


@register('local')
class LocalAttention(SparseAttention):
  """Blocked local attention: own block and `neighbours` blocks each side (causal: before)."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               block: int = 64, neighbours: int = 1):
    super().__init__(patterns.Local(num_heads, causal, block, neighbours),
                     dim=dim, max_len=max_len, rngs=rngs)


@register('strided')
class StridedAttention(SparseAttention):
  """Sparse Transformer: half the heads local, half strided by `stride` ('strided' or 'fixed')."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               stride: int = 128, variant: str = 'strided', summary: int = 8, block: int = 64):
    super().__init__(patterns.Strided(num_heads, causal, block, stride, variant, summary),
                     dim=dim, max_len=max_len, rngs=rngs)


@register('global')
class GlobalAttention(SparseAttention):
  """The first `num_global` positions see and are seen by all; the rest see only themselves."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               num_global: int = 16, block: int = 64):
    super().__init__(patterns.Global(num_heads, causal, block, num_global),
                     dim=dim, max_len=max_len, rngs=rngs)


@register('longformer')
class LongformerAttention(SparseAttention):
  """Sliding window (dilation per head) plus global positions at the start."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               window: int = 256, dilation: int | tuple[int, ...] = 1, num_global: int = 0,
               block: int = 64):
    super().__init__(patterns.Longformer(num_heads, causal, block, window, dilation, num_global),
                     dim=dim, max_len=max_len, rngs=rngs)


@register('bigbird')
class BigBirdAttention(SparseAttention):
  """Blocks of `block`: 3 window blocks, global blocks, random blocks fixed by `seed`."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               block: int = 64, global_blocks: int = 2, random_blocks: int = 3, seed: int = 0):
    super().__init__(patterns.BigBird(num_heads, causal, block, global_blocks, random_blocks,
                                      seed), dim=dim, max_len=max_len, rngs=rngs)
