"""LSH attention (Kitaev et al. 2020, Reformer): shared query-key, angular hashing,
attention inside chunks of tokens sorted by bucket."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Buffer, Mixer, check_length
from mixers.bucketed import bucketed_attention, unit
from mixers.layers import linear
from mixers.registry import register


def random_rotations(key, num_heads: int, n_rounds: int, head_dim: int, n_buckets: int):
  """One Gaussian projection R [head_dim, n_buckets / 2] per head and hashing round."""
  return jax.random.normal(key, (num_heads, n_rounds, head_dim, n_buckets // 2), jnp.float32)


def lsh_buckets(x, rotations):
  """Angular LSH h(x) = argmax([xR; -xR]): x [batch, T, heads, dh] -> [batch, heads, rounds, T]."""
  xr = jnp.einsum('bthd,hrdn->bhrtn', jax.lax.stop_gradient(x).astype(jnp.float32), rotations)
  return jnp.argmax(jnp.concatenate([xr, -xr], -1), -1).astype(jnp.int32)


def lsh_attention(qk, v, buckets, *, n_buckets: int, chunk_size: int, causal: bool):
  """Reformer attention given the hashes: queries qk, keys qk / |qk| (a token's own key
  would otherwise dominate its scores). qk, v: [batch, T, heads, dh]."""
  keys = unit(qk.astype(jnp.float32))
  return bucketed_attention(qk, keys, v, buckets, n_buckets=n_buckets, chunk_size=chunk_size,
                            causal=causal, same_bucket=False)


@register('lsh')
class LSHAttention(Mixer):
  """Reformer's LSH self-attention. n_buckets defaults to about max_len / chunk_size, so
  an average bucket fills one chunk. Training draws fresh rotations from rng each call,
  as the paper does; evaluation uses the fixed rotations drawn at construction."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               n_buckets: int | None = None, n_rounds: int = 2, chunk_size: int = 64):
    if dim % num_heads:
      raise ValueError(f'lsh: dim={dim} is not divisible by num_heads={num_heads}')
    if n_buckets is None:
      n_buckets = 2 * max(1, math.ceil(max_len / (2 * chunk_size)))
    if n_buckets < 2 or n_buckets % 2:
      raise ValueError(f'lsh: n_buckets must be even and >= 2, got {n_buckets}')
    for name, value in (('n_rounds', n_rounds), ('chunk_size', chunk_size)):
      if value < 1:
        raise ValueError(f'lsh: {name} must be >= 1, got {value}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.n_buckets, self.n_rounds, self.chunk_size = n_buckets, n_rounds, chunk_size
    self.head_dim = dim // num_heads
    self.qk, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(2))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    self.rotations = Buffer(self._draw(rngs.params()))

  def _draw(self, key):
    return random_rotations(key, self.num_heads, self.n_rounds, self.head_dim, self.n_buckets)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'lsh')
    qk, v = (f(x).reshape(*x.shape[:2], self.num_heads, -1) for f in (self.qk, self.v))
    rotations = self.rotations[...] if rng is None else self._draw(rng)
    y = lsh_attention(qk, v, lsh_buckets(qk, rotations), n_buckets=self.n_buckets,
                      chunk_size=self.chunk_size, causal=self.causal)
    return self.out(y.reshape(x.shape))
