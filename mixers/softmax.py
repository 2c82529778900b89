"""The softmax attention baseline: multi-head, causal or bidirectional, with a KV cache."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers import sequence_parallel as sp
from mixers.chunked_softmax import chunked_softmax_attention
from mixers.dense_softmax import dense_softmax_attention
from mixers.layers import constrain, linear
from mixers.registry import register
from mixers.ring_softmax import ring_softmax_attention


IMPLEMENTATIONS = (None, 'xla', 'cudnn', 'chunked')


def check_options(implementation, chunk_size: int) -> None:
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'softmax: implementation must be one of {IMPLEMENTATIONS}, '
                     f'got {implementation!r}')
  if chunk_size < 1:
    raise ValueError(f'softmax: chunk_size must be positive, got {chunk_size}')


def choose_implementation(q, chunk_size: int) -> str:
  """The backend that implementation=None picks for queries q: [batch, length, heads, dh].

  cuDNN flash attention on a GPU where it applies (bf16/fp16, dh <= 128 and a
  multiple of 8); otherwise the dense path (mixers.dense_softmax) while the whole
  sequence fits in one chunk (length <= chunk_size), and the chunked path above that.
  The dense path keeps one float32 [batch, heads, T, T] array for the gradient (0.5 GB
  at T=4096, batch 1, 8 heads; autodiff of jax.nn.dot_product_attention's dense form
  kept 1.6 GB, and on CPU it was slower than the chunked path from T=1024 on).
  """
  t, dh = q.shape[1], q.shape[-1]
  if (jax.default_backend() == 'gpu' and q.dtype in (jnp.bfloat16, jnp.float16)
      and dh <= 128 and dh % 8 == 0):
    return 'cudnn'
  return 'xla' if t <= chunk_size else 'chunked'


def softmax_attention(q, k, v, *, causal: bool, implementation: str | None = None,
                      chunk_size: int = 512):
  """softmax(q k^T / sqrt(dh)) v over [batch, length, heads, dh] arrays.

  implementation: 'xla' (dense scores, mixers.dense_softmax), 'cudnn' (flash attention on
  a GPU, through jax.nn.dot_product_attention); 'chunked' (mixers.chunked_softmax, memory
  linear in length, chunk_size positions per block); None picks one by
  choose_implementation.
  """
  check_options(implementation, chunk_size)
  if sp.shards() > 1:  # the length is split over devices: ring attention, whatever the backend
    return ring_softmax_attention(q, k, v, causal=causal, chunk_size=chunk_size)
  implementation = implementation or choose_implementation(q, chunk_size)
  if implementation == 'chunked':
    return chunked_softmax_attention(q, k, v, causal=causal, chunk_size=chunk_size)
  if implementation == 'xla':
    return dense_softmax_attention(q, k, v, causal=causal)
  return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation='cudnn')


@register('softmax')
class SoftmaxAttention(Mixer):
  """Multi-head softmax attention (Vaswani et al. 2017).

  Options: implementation (see softmax_attention; None = automatic) and
  chunk_size (the chunked path's block length, also the automatic dense limit).
  With the length split over sequence devices it runs ring attention (mixers/ring_softmax.py).
  """

  sequence_parallel = True

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, implementation: str | None = None, chunk_size: int = 512):
    if dim % num_heads:
      raise ValueError(f'softmax: dim={dim} is not divisible by num_heads={num_heads}')
    check_options(implementation, chunk_size)
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.implementation, self.chunk_size = implementation, chunk_size
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs)
                              for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def _qkv(self, x):
    """Queries, keys, values [batch, length, heads, dh]. The key bias b adds q . b to every
    score of a row, which the softmax cancels exactly: it is left out, so its gradient is
    exactly zero rather than rounding noise (which AdamW turns into lr-sized steps that
    differ with the compiled layout, e.g. scanned or looped layers). Outputs are unchanged
    (up to rounding) for any b, so checkpoints that hold one restore as they were."""
    k = constrain(x @ self.k.kernel[...], self.k.activation)
    return self._heads(self.q(x)), self._heads(k), self._heads(self.v(x))

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'softmax')
    q, k, v = self._qkv(x)
    y = softmax_attention(q, k, v, causal=self.causal, implementation=self.implementation,
                          chunk_size=self.chunk_size)
    return self.out(y.reshape(x.shape))

  def init_cache(self, batch: int, max_len: int):
    check_length(max_len, self.max_len, 'softmax')
    dh = self.q.out_features // self.num_heads
    zeros = jnp.zeros((batch, max_len, self.num_heads, dh), jnp.float32)
    return {'k': zeros, 'v': zeros, 'index': jnp.zeros((), jnp.int32)}

  def step(self, x_t, cache):
    """One decoding position: append k, v to the cache and attend to positions <= index."""
    q, k, v = self._qkv(x_t)
    i = cache['index']
    ks = jax.lax.dynamic_update_slice_in_dim(cache['k'], k.astype(cache['k'].dtype), i, 1)
    vs = jax.lax.dynamic_update_slice_in_dim(cache['v'], v.astype(cache['v'].dtype), i, 1)
    mask = (jnp.arange(ks.shape[1]) <= i)[None, None, None, :]
    # One query against the cache: the dense form is O(T) already, so only an
    # explicit 'cudnn' changes it.
    impl = 'cudnn' if self.implementation == 'cudnn' else 'xla'
    y = jax.nn.dot_product_attention(q, ks, vs, mask=mask, implementation=impl)
    return self.out(y.reshape(x_t.shape)), {'k': ks, 'v': vs, 'index': i + 1}
