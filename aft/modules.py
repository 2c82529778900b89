"""Thin NNX modules around aft.functions, registered as aft_full, aft_local, aft_simple, aft_conv.

Projections as in the paper: Q, K, V = X W^Q, X W^K, X W^V of full width (AFT-conv:
K has one column per head), output projection back to dim. AFT has no attention
heads, so num_heads is ignored except as AFT-conv's default head count.
"""
from __future__ import annotations

from flax import nnx

from aft import decode
from aft.functions import aft_conv, aft_full, aft_local, aft_simple, conv_bias
from mixers.base import Mixer, check_length
from mixers.layers import linear
from mixers.registry import register


class _AFT(Mixer):
  """Shared projections; subclasses set `name` and implement `_mix(q, k, v)`."""

  name = 'aft'

  def __init__(self, dim: int, kdim: int, max_len: int, causal: bool, rngs: nnx.Rngs):
    self.max_len, self.causal = max_len, causal
    self.q = linear(dim, dim, ('embed', 'heads'), rngs=rngs)
    self.k = linear(dim, kdim, ('embed', 'heads'), rngs=rngs)
    self.v = linear(dim, dim, ('embed', 'heads'), rngs=rngs)
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, self.name)
    return self.out(self._mix(self.q(x), self.k(x), self.v(x)))

  def _simple_step(self, x_t, cache):
    q, k, v = (f(x_t)[:, 0] for f in (self.q, self.k, self.v))
    y, cache = decode.simple_step(cache, q, k, v)
    return self.out(y[:, None]), cache

  def _check_decode(self, max_len: int):
    if not self.causal:
      raise ValueError(f'{self.name}: decoding needs causal=True')
    check_length(max_len, self.max_len, self.name)


class _PairBias(_AFT):
  """AFT-full/local: pairwise bias w = u v^T with u, v in R^{max_len x bias_dim} (Eq. 7),
  or a dense [max_len, max_len] w when bias_dim is None (the paper's ablation). Init
  N(0, 10^-2), read as variance 1e-2."""

  def __init__(self, dim, max_len, causal, rngs, bias_dim):
    super().__init__(dim, dim, max_len, causal, rngs)
    init = nnx.with_partitioning(nnx.initializers.normal(0.1), ('length', None))
    self.bias_dim = bias_dim
    if bias_dim is None:
      self.bias_w = nnx.Param(init(rngs.params(), (max_len, max_len)))
    else:
      self.bias_u = nnx.Param(init(rngs.params(), (max_len, bias_dim)))
      self.bias_v = nnx.Param(init(rngs.params(), (max_len, bias_dim)))

  def _w(self, length: int):
    """The leading length x length block of w (or of its factors)."""
    if self.bias_dim is None:
      return self.bias_w[:length, :length]
    return self.bias_u[:length], self.bias_v[:length]

  def _bias_row(self, t, pos):
    if self.bias_dim is None:
      return self.bias_w[t, pos][:, None]
    return (self.bias_v[pos] @ self.bias_u[t])[:, None]

  def _window_step(self, x_t, cache):
    q, k, v = (f(x_t)[:, 0, None] for f in (self.q, self.k, self.v))
    y, cache = decode.window_step(cache, q, k, v, self._bias_row)
    return self.out(y.reshape(x_t.shape)), cache


@register('aft_full')
class AFTFull(_PairBias):
  """AFT-full (Eq. 2); decodes with a key/value cache of max_len."""

  name = 'aft_full'

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, bias_dim: int | None = 64):
    super().__init__(dim, max_len, causal, rngs, bias_dim)

  def _mix(self, q, k, v):
    return aft_full(q, k, v, self._w(q.shape[1]), causal=self.causal)

  def init_cache(self, batch: int, max_len: int):
    self._check_decode(max_len)
    dim = self.out.in_features
    return decode.window_cache(batch, max_len, 1, dim, dim)

  step = _PairBias._window_step


@register('aft_local')
class AFTLocal(_PairBias):
  """AFT-local (Eq. 4): learned bias inside |t - t'| < window, 0 outside; window=0 is AFT-simple."""

  name = 'aft_local'
  sequence_parallel = True  # aft/sequence_parallel.py (AFT-conv: 1-D)

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, window: int = 32, bias_dim: int | None = 64):
    if window < 0:
      raise ValueError(f'aft_local: window must be >= 0, got {window}')
    super().__init__(dim, max_len, causal, rngs, bias_dim)
    self.window = window

  def _mix(self, q, k, v):
    return aft_local(q, k, v, self._w(q.shape[1]), window=self.window, causal=self.causal)

  def init_cache(self, batch: int, max_len: int):
    self._check_decode(max_len)
    dim = self.out.in_features
    if self.window == 0:
      return decode.simple_cache(batch, dim)
    return decode.window_cache(batch, min(self.window, max_len), 1, dim, dim)

  def step(self, x_t, cache):
    if self.window == 0:
      return self._simple_step(x_t, cache)
    return self._window_step(x_t, cache)


@register('aft_simple')
class AFTSimple(_AFT):
  """AFT-simple (Eq. 5); decodes with O(dim) state."""

  name = 'aft_simple'
  sequence_parallel = True  # aft/sequence_parallel.py (AFT-conv: 1-D)

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs):
    super().__init__(dim, dim, max_len, causal, rngs)

  def _mix(self, q, k, v):
    return aft_simple(q, k, v, causal=self.causal)

  def init_cache(self, batch: int, max_len: int):
    self._check_decode(max_len)
    return decode.simple_cache(batch, self.out.in_features)

  step = _AFT._simple_step


@register('aft_conv')
class AFTConv(_AFT):
  """AFT-conv (Eq. 6): `heads` heads (default num_heads), a window-tap filter per head
  (window x window over spatial_shape=(H, W) in 2-D), reparameterised by Eq. 8 with
  gamma = beta = 0 at init, so training starts from AFT-simple per head."""

  name = 'aft_conv'
  sequence_parallel = True  # aft/sequence_parallel.py (AFT-conv: 1-D)

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool,
               rngs: nnx.Rngs, heads: int | None = None, window: int = 11,
               spatial_shape: tuple[int, int] | None = None):
    heads = heads or num_heads
    if dim % heads:
      raise ValueError(f'aft_conv: dim={dim} is not divisible by heads={heads}')
    if window < 1:
      raise ValueError(f'aft_conv: window must be >= 1, got {window}')
    if spatial_shape is not None:
      spatial_shape = tuple(spatial_shape)
      if causal:
        raise ValueError('aft_conv: 2-D (spatial_shape) is bidirectional only; use causal=False')
      if spatial_shape[0] * spatial_shape[1] > max_len:
        raise ValueError(f'aft_conv: spatial_shape={spatial_shape} exceeds max_len={max_len}')
    super().__init__(dim, heads, max_len, causal, rngs)
    self.spatial_shape = spatial_shape
    taps = (heads, window) + ((window,) if spatial_shape else ())
    self.w = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(1.), (None,) * len(taps))(
        rngs.params(), taps))
    zeros = nnx.with_partitioning(nnx.initializers.zeros_init(), (None,))
    self.gamma = nnx.Param(zeros(rngs.params(), (heads,)))
    self.beta = nnx.Param(zeros(rngs.params(), (heads,)))

  def _taps(self):
    return conv_bias(self.w[...], self.gamma[...], self.beta[...])

  def _mix(self, q, k, v):
    if self.spatial_shape and q.shape[1] != self.spatial_shape[0] * self.spatial_shape[1]:
      raise ValueError(f'aft_conv: length {q.shape[1]} is not H * W for '
                       f'spatial_shape={self.spatial_shape}')
    return aft_conv(q, k, v, self._taps(), causal=self.causal, spatial_shape=self.spatial_shape)

  def init_cache(self, batch: int, max_len: int):
    self._check_decode(max_len)
    heads, window = self.w.shape
    dim = self.out.in_features
    return decode.window_cache(batch, window, heads, 1, dim // heads)

  def step(self, x_t, cache):
    taps = self._taps()  # [h, s]; tap j looks at t' = t - (s - 1) + j
    heads, window = taps.shape
    q, k, v = (f(x_t)[:, 0] for f in (self.q, self.k, self.v))
    q, v = (a.reshape(a.shape[0], heads, -1) for a in (q, v))
    y, cache = decode.window_step(cache, q, k[..., None], v,
                                  lambda t, pos: taps.T[pos - t + window - 1])
    return self.out(y.reshape(x_t.shape)), cache
