"""MLP-Mixer token mixing (Tolstikhin et al. 2021): an MLP across the length axis,
shared over channels:  Y = W2 gelu(W1 X) along tokens.

W1 is [hidden, max_len] and W2 [max_len, hidden]; shorter sequences use the
leading columns of W1 and rows of W2. Causal: hidden = max_len and both
matrices lower triangular, so hidden unit j and output t read positions <= j,
<= t only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.registry import register


def token_mlp(x, w1, b1, w2, b2, *, causal: bool):
  """x [B, T, D] mixed along T by w1 [H, T], w2 [T, H] (biases b1 [H], b2 [T])."""
  if causal:
    w1, w2 = jnp.tril(w1), jnp.tril(w2)
  h = jax.nn.gelu(jnp.einsum('ht,btd->bhd', w1.astype(x.dtype), x) + b1[:, None].astype(x.dtype))
  return jnp.einsum('th,bhd->btd', w2.astype(x.dtype), h) + b2[:, None].astype(x.dtype)


@register('mlp_mixer')
class MLPMixer(Mixer):

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               hidden: int = 0):
    hidden = hidden or max_len
    if causal and hidden != max_len:
      raise ValueError(f'mlp_mixer: the causal form needs hidden == max_len ({max_len}), got '
                       f'{hidden}: lower-triangular weights align hidden units with positions')
    self.max_len, self.causal = max_len, causal
    init = nnx.initializers.lecun_normal()
    self.w1 = nnx.Param(nnx.with_partitioning(init, (None, 'length'))(
        rngs.params(), (hidden, max_len)))
    self.b1 = nnx.Param(jnp.zeros((hidden,)))
    self.w2 = nnx.Param(nnx.with_partitioning(init, ('length', None))(
        rngs.params(), (max_len, hidden)))
    self.b2 = nnx.Param(jnp.zeros((max_len,)))

  def __call__(self, x, *, rng=None):
    t = x.shape[1]
    check_length(t, self.max_len, 'mlp_mixer')
    w1, b1 = self.w1[...][:, :t], self.b1[...]
    w2, b2 = self.w2[...][:t], self.b2[...][:t]
    if self.causal:  # hidden units beyond t read only positions >= t: drop them
      w1, b1, w2 = w1[:t], b1[:t], w2[:, :t]
    return token_mlp(x, w1, b1, w2, b2, causal=self.causal)
