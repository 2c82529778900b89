"""Pre-LayerNorm Transformer block: x + mixer(LN(x)), then x + MLP(LN(x)); any registered mixer."""
from __future__ import annotations

import jax
from flax import nnx

import mixers
from mixers.layers import layer_norm, linear


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; a no-op when rng is None (evaluation) or rate is 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jax.numpy.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class MLP(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.up = linear(dim, hidden, ('embed', 'mlp'), rngs=rngs)
    self.down = linear(hidden, dim, ('mlp', 'embed'), rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, max_len: int, causal: bool,
               mixer: str, mixer_options: dict, dropout_rate: float, rngs: nnx.Rngs):
    self.norm1 = layer_norm(dim, rngs=rngs)
    self.mixer = mixers.build(mixer, dim=dim, num_heads=num_heads, max_len=max_len,
                              causal=causal, rngs=rngs, **mixer_options)
    self.norm2 = layer_norm(dim, rngs=rngs)
    self.mlp = MLP(dim, mlp_dim, rngs=rngs)
    self.dropout_rate = dropout_rate

  def __call__(self, x, *, rng=None):
    keys = (None,) * 3 if rng is None else jax.random.split(rng, 3)
    x = x + dropout(self.mixer(self.norm1(x), rng=keys[0]), self.dropout_rate, keys[1])
    return x + dropout(self.mlp(self.norm2(x)), self.dropout_rate, keys[2])

  def step(self, x_t, cache):
    """Decoding: one position through the block, using the mixer's cache."""
    y, cache = self.mixer.step(self.norm1(x_t), cache)
    x_t = x_t + y
    return x_t + self.mlp(self.norm2(x_t)), cache
