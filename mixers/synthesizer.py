"""Synthesizer (Tay et al. 2021): attention weights not from query-key products.

  dense:  B_t = W2 relu(W1 x_t), one row of max_len logits per token and head
  random: B = R, a learned [heads, max_len, max_len] matrix, or R1 R2^T with
          R1, R2 in R^{max_len x factor} when factor > 0
  Y = softmax(B[:, :T, :T]) V   (sequences shorter than max_len use the leading block)

Causal by masking the logits above the diagonal; decoding keeps a cache of V.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.layers import linear
from mixers.registry import register


def synthetic_attention(logits, v, *, causal: bool):
  """softmax over the last axis of logits [B?, H, T, T] (float32), then mix v [B, T, H, dh]."""
  logits = logits.astype(jnp.float32)
  if causal:
    t = logits.shape[-1]
    logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits, -jnp.inf)
  p = jax.nn.softmax(logits, axis=-1)
  p = jnp.broadcast_to(p, (v.shape[0], *p.shape[-3:]))
  return jnp.einsum('bhqk,bkhd->bqhd', p, v.astype(jnp.float32)).astype(v.dtype)


@register('synthesizer')
class Synthesizer(Mixer):

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               mode: str = 'dense', factor: int = 0):
    if mode not in ('dense', 'random'):
      raise ValueError(f"synthesizer: mode must be 'dense' or 'random', got {mode!r}")
    if dim % num_heads:
      raise ValueError(f'synthesizer: dim={dim} is not divisible by num_heads={num_heads}')
    self.num_heads, self.max_len, self.causal, self.mode = num_heads, max_len, causal, mode
    self.v = linear(dim, dim, ('embed', 'heads'), rngs=rngs)
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    if mode == 'dense':
      self.w1 = linear(dim, dim, ('embed', 'mlp'), rngs=rngs)
      self.w2 = linear(dim, num_heads * max_len, ('mlp', None), rngs=rngs)
    else:
      init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, 'length', None))
      shape = (num_heads, max_len, factor) if factor else (num_heads, max_len, max_len)
      self.r1 = nnx.Param(init(rngs.params(), shape))
      self.r2 = nnx.Param(init(rngs.params(), shape)) if factor else None

  def _logits(self, x, rows: slice, t: int):
    """Logits of query positions `rows` over key positions [0, t): [B or 1, H, rows, t]."""
    if self.mode == 'dense':
      b = self.w2(jax.nn.relu(self.w1(x)))  # [B, rows, H * max_len]
      b = b.reshape(*b.shape[:2], self.num_heads, self.max_len)[..., :t]
      return b.transpose(0, 2, 1, 3)
    r1 = self.r1[...][:, rows]
    if self.r2 is None:
      return r1[None, :, :, :t]
    return jnp.einsum('hqf,hkf->hqk', r1, self.r2[...][:, :t])[None]

  def __call__(self, x, *, rng=None):
    t = x.shape[1]
    check_length(t, self.max_len, 'synthesizer')
    v = self.v(x).reshape(*x.shape[:2], self.num_heads, -1)
    y = synthetic_attention(self._logits(x, slice(0, t), t), v, causal=self.causal)
    return self.out(y.reshape(x.shape))

  def init_cache(self, batch: int, max_len: int):
    if not self.causal:
      raise NotImplementedError('synthesizer decodes only in causal mode')
    check_length(max_len, self.max_len, 'synthesizer')
    dh = self.v.out_features // self.num_heads
    return {'v': jnp.zeros((batch, max_len, self.num_heads, dh), jnp.float32),
            'index': jnp.zeros((), jnp.int32)}

  def step(self, x_t, cache):
    i = cache['index']
    v = self.v(x_t).reshape(*x_t.shape[:2], self.num_heads, -1)
    vs = jax.lax.dynamic_update_slice_in_dim(cache['v'], v.astype(cache['v'].dtype), i, 1)
    n = vs.shape[1]
    if self.mode == 'dense':
      logits = self._logits(x_t, slice(0, 1), n)
    else:  # row i of R (or R1 R2^T) over the cached positions
      r1 = jax.lax.dynamic_slice_in_dim(self.r1[...], i, 1, axis=1)
      logits = (r1[None, :, :, :n] if self.r2 is None else
                jnp.einsum('hqf,hkf->hqk', r1, self.r2[...][:, :n])[None])
    logits = jnp.where(jnp.arange(n) <= i, logits.astype(jnp.float32), -jnp.inf)
    y = synthetic_attention(logits, vs, causal=False)
    return self.out(y.reshape(x_t.shape)), {'v': vs, 'index': i + 1}
