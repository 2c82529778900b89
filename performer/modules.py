"""The Performer mixer: multi-head FAVOR+ with a redrawable random projection."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Buffer, Mixer, check_length
from mixers.kernel_attention import init_state, linear_attention_step
from mixers.layers import linear
from mixers.registry import register
from performer.attention import favor_attention
from performer.features import KERNELS, feature_map, random_projection


@register('performer')
class Performer(Mixer):
  """FAVOR+ (Choromanski et al. 2021); the paper's defaults: m = 256, orthogonal."""

  sequence_parallel = True

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, num_features: int = 256, kernel: str = 'softmax',
               orthogonal: bool = True, redraw_every: int = 0, chunk_size: int = 128,
               block_size: int = 256):
    if dim % num_heads:
      raise ValueError(f'performer: dim={dim} is not divisible by num_heads={num_heads}')
    if kernel not in KERNELS:
      raise ValueError(f'performer: unknown kernel {kernel!r}; kernels: {", ".join(KERNELS)}')
    for name, value, low in (('num_features', num_features, 1), ('chunk_size', chunk_size, 1),
                             ('block_size', block_size, 1), ('redraw_every', redraw_every, 0)):
      if value < low:
        raise ValueError(f'performer: {name} must be >= {low}, got {value}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.num_features, self.kernel, self.orthogonal = num_features, kernel, orthogonal
    self.redraw_every, self.chunk_size, self.block_size = redraw_every, chunk_size, block_size
    self.head_dim = dim // num_heads
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs)
                              for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    self.projection = Buffer(self._draw(rngs.params()))

  def _draw(self, key):
    return random_projection(key, self.num_features, self.head_dim, orthogonal=self.orthogonal)

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'performer')
    q, k, v = (self._heads(f(x)) for f in (self.q, self.k, self.v))
    y = favor_attention(q, k, v, self.projection[...], causal=self.causal, kernel=self.kernel,
                        chunk_size=self.chunk_size, block_size=self.block_size)
    return self.out(y.reshape(x.shape))

  def update_buffers(self, step, key):
    """Redraws the projection when step % redraw_every == 0 (key is folded from step)."""
    if not self.redraw_every:
      return
    self.projection[...] = jax.lax.cond(step % self.redraw_every == 0,
                                        lambda: self._draw(key),
                                        lambda: self.projection[...])

  def init_cache(self, batch: int, max_len: int):
    if not self.causal:
      raise ValueError('performer: decoding needs causal=True')
    check_length(max_len, self.max_len, 'performer')
    features = feature_map(self.projection[...], self.kernel)
    m = jax.eval_shape(features, jnp.zeros((1, self.head_dim)))[0].shape[-1]
    return init_state((batch, self.num_heads), m, self.head_dim)

  def step(self, x_t, cache):
    """One position in constant memory: the m x dh state and the m normaliser."""
    q, k, v = (self._heads(f(x_t))[:, 0] for f in (self.q, self.k, self.v))
    features = feature_map(self.projection[...], self.kernel)
    (q_feat, _), (k_feat, k_logscale) = features(q), features(k)
    y, cache = linear_attention_step(q_feat, k_feat, v, cache, k_logscale)
    return self.out(y.reshape(x_t.shape)), cache
