"""Kernelised linear attention (Katharopoulos et al. 2020):

  Y = phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1),  phi(x) = elu(x) + 1

on the engine FAVOR+ also uses (mixers/kernel_attention.py: chunked, parallel in
length when causal, constant-memory decoding); only the feature map differs.
"""
from __future__ import annotations

import jax
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.kernel_attention import attention_by_heads, init_state, linear_attention_step
from mixers.layers import linear
from mixers.registry import register

FEATURES = {'elu': lambda x: jax.nn.elu(x) + 1.0, 'relu': jax.nn.relu}


@register('linear')
class LinearAttention(Mixer):
  sequence_parallel = True

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               feature_map: str = 'elu', chunk_size: int = 128, block_size: int = 256):
    if dim % num_heads:
      raise ValueError(f'linear: dim={dim} is not divisible by num_heads={num_heads}')
    if feature_map not in FEATURES:
      raise ValueError(f'linear: unknown feature_map {feature_map!r}; known: {sorted(FEATURES)}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.feature_map, self.chunk_size, self.block_size = feature_map, chunk_size, block_size
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def _phi(self, x):
    return FEATURES[self.feature_map](x), None  # (features, log-scale): no scale needed

  def _heads(self, x):
    """[B, T, dim] -> [B, T, H, dh]."""
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'linear')
    q, k, v = (self._heads(f(x)) for f in (self.q, self.k, self.v))
    y = attention_by_heads(q, k, v, lambda: self._phi, causal=self.causal,
                           chunk_size=self.chunk_size, block_size=self.block_size)
    return self.out(y.reshape(x.shape))

  def init_cache(self, batch: int, max_len: int):
    if not self.causal:
      raise ValueError('linear: decoding needs causal=True')
    check_length(max_len, self.max_len, 'linear')
    dh = self.q.out_features // self.num_heads
    return init_state((batch, self.num_heads), dh, dh)

  def step(self, x_t, cache):
    """One position with an O(1) state: the dh x dh sum and the normaliser."""
    q, k, v = (self._heads(f(x_t))[:, 0] for f in (self.q, self.k, self.v))
    y, cache = linear_attention_step(self._phi(q)[0], self._phi(k)[0], v, cache)
    return self.out(y.reshape(x_t.shape)), cache
