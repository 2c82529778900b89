"""The softmax attention baseline: multi-head, causal or bidirectional, with a KV cache."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.layers import linear
from mixers.registry import register


def softmax_attention(q, k, v, *, causal: bool, implementation: str | None = None):
  """softmax(q k^T / sqrt(dh)) v over [batch, length, heads, dh] arrays.

  Goes through jax.nn.dot_product_attention, so a GPU can use cuDNN flash
  attention (implementation='cudnn'); None lets JAX choose, 'xla' forces XLA.
  """
  return jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                      implementation=implementation)


@register('softmax')
class SoftmaxAttention(Mixer):
  """Multi-head softmax attention (Vaswani et al. 2017)."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, implementation: str | None = None):
    if dim % num_heads:
      raise ValueError(f'softmax: dim={dim} is not divisible by num_heads={num_heads}')
    if implementation not in (None, 'xla', 'cudnn'):
      raise ValueError(f"softmax: implementation must be None, 'xla' or 'cudnn', "
                       f'got {implementation!r}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.implementation = implementation
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs)
                              for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'softmax')
    q, k, v = (self._heads(f(x)) for f in (self.q, self.k, self.v))
    y = softmax_attention(q, k, v, causal=self.causal, implementation=self.implementation)
    return self.out(y.reshape(x.shape))

  def init_cache(self, batch: int, max_len: int):
    check_length(max_len, self.max_len, 'softmax')
    dh = self.q.out_features // self.num_heads
    zeros = jnp.zeros((batch, max_len, self.num_heads, dh), jnp.float32)
    return {'k': zeros, 'v': zeros, 'index': jnp.zeros((), jnp.int32)}

  def step(self, x_t, cache):
    """One decoding position: append k, v to the cache and attend to positions <= index."""
    q, k, v = (self._heads(f(x_t)) for f in (self.q, self.k, self.v))
    i = cache['index']
    ks = jax.lax.dynamic_update_slice_in_dim(cache['k'], k.astype(cache['k'].dtype), i, 1)
    vs = jax.lax.dynamic_update_slice_in_dim(cache['v'], v.astype(cache['v'].dtype), i, 1)
    mask = (jnp.arange(ks.shape[1]) <= i)[None, None, None, :]
    y = jax.nn.dot_product_attention(q, ks, vs, mask=mask, implementation=self.implementation)
    return self.out(y.reshape(x_t.shape)), {'k': ks, 'v': vs, 'index': i + 1}
