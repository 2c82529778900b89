"""Linformer (Wang et al. 2020): keys and values compressed along length to k rows.

  Y = softmax(Q (E K)^T / sqrt(dh)) (F V),  E, F in R^{k x T}

reduction='linear' learns E and F (shared by all heads; `share_kv` uses E for
both); reduction='conv' compresses with a strided convolution instead (Liu et
al. 2018's memory-compressed attention): windows of r = ceil(max_len / k)
positions, mixed by one learned [r * dim, dim] kernel. Every output sees every
input, so there is no causal form: causal=True is an error at build time.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.layers import linear
from mixers.registry import register


def compressed_attention(q, k, v):
  """softmax(q k^T / sqrt(dh)) v with q [B, T, H, dh] and compressed k, v [B, k, H, dh]."""
  return jax.nn.dot_product_attention(q, k, v, implementation='xla')


def project_length(x, e):
  """x [B, T, D] compressed by e [k, T] along length -> [B, k, D] (float32 sums)."""
  return jnp.einsum('kt,btd->bkd', e, x, preferred_element_type=jnp.float32).astype(x.dtype)


def strided_compress(x, kernel, stride: int):
  """Windows of `stride` positions (zero-padded at the end) mixed by kernel [stride*D, D]."""
  b, t, d = x.shape
  pad = -t % stride
  x = jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(b, (t + pad) // stride, stride * d)
  return x @ kernel.astype(x.dtype)


@register('linformer')
class Linformer(Mixer):

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               k: int = 256, reduction: str = 'linear', share_kv: bool = False):
    if causal:
      raise ValueError('linformer has no causal form: its length projection mixes every '
                       'position into every compressed row; use it with causal=False')
    if reduction not in ('linear', 'conv'):
      raise ValueError(f"linformer: reduction must be 'linear' or 'conv', got {reduction!r}")
    if dim % num_heads:
      raise ValueError(f'linformer: dim={dim} is not divisible by num_heads={num_heads}')
    self.num_heads, self.max_len, self.reduction = num_heads, max_len, reduction
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    if reduction == 'linear':
      init = nnx.with_partitioning(nnx.initializers.normal(1.0 / math.sqrt(k)), (None, 'length'))
      self.e = nnx.Param(init(rngs.params(), (k, max_len)))
      self.f = None if share_kv else nnx.Param(init(rngs.params(), (k, max_len)))
    else:
      self.stride = -(-max_len // k)
      self.compress = linear(self.stride * dim, dim, (None, 'embed'), use_bias=False, rngs=rngs)

  def __call__(self, x, *, rng=None):
    t = x.shape[1]
    check_length(t, self.max_len, 'linformer')
    q, k, v = self.q(x), self.k(x), self.v(x)
    if self.reduction == 'linear':
      e = self.e[:, :t]  # shorter sequences use the leading columns
      f = e if self.f is None else self.f[:, :t]
      k, v = project_length(k, e), project_length(v, f)
    else:
      k, v = (strided_compress(a, self.compress.kernel[...], self.stride) for a in (k, v))
    heads = lambda a: a.reshape(*a.shape[:2], self.num_heads, -1)
    y = compressed_attention(heads(q), heads(k), heads(v))
    return self.out(y.reshape(x.shape))
