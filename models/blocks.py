"""Pre-LayerNorm Transformer blocks: x + mixer(LN(x)), then x + MLP(LN(x)); any registered mixer.

`Stack` is the one stack of blocks every backbone uses (the causal LM, the encoders of the
classification tasks), so how the layers run is decided in one place.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import mixers
from mixers.layers import layer_norm, linear


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; a no-op when rng is None (evaluation) or rate is 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_path(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Stochastic depth (Huang et al. 2016): a residual branch dropped for whole examples,
  the kept ones scaled by 1 / (1 - rate); a no-op in evaluation or at rate 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class MLP(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.up = linear(dim, hidden, ('embed', 'mlp'), rngs=rngs)
    self.down = linear(hidden, dim, ('mlp', 'embed'), rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, max_len: int, causal: bool,
               mixer: str, mixer_options: dict, dropout_rate: float, drop_path_rate: float = 0.0,
               rngs: nnx.Rngs):
    self.norm1 = layer_norm(dim, rngs=rngs)
    self.mixer = mixers.build(mixer, dim=dim, num_heads=num_heads, max_len=max_len,
                              causal=causal, rngs=rngs, **mixer_options)
    self.norm2 = layer_norm(dim, rngs=rngs)
    self.mlp = MLP(dim, mlp_dim, rngs=rngs)
    self.dropout_rate, self.drop_path_rate = dropout_rate, drop_path_rate

  def __call__(self, x, *, rng=None):
    keys = (None,) * 5 if rng is None else jax.random.split(rng, 5)
    y = dropout(self.mixer(self.norm1(x), rng=keys[0]), self.dropout_rate, keys[1])
    x = x + drop_path(y, self.drop_path_rate, keys[3])
    y = dropout(self.mlp(self.norm2(x)), self.dropout_rate, keys[2])
    return x + drop_path(y, self.drop_path_rate, keys[4])

  def step(self, x_t, cache):
    """Decoding: one position through the block, using the mixer's cache."""
    y, cache = self.mixer.step(self.norm1(x_t), cache)
    x_t = x_t + y
    return x_t + self.mlp(self.norm2(x_t)), cache


class Stack(nnx.Module):
  """num_layers Blocks run in order. drop_path_rate rises linearly from 0 at the first block to
  the given rate at the last (the DeiT schedule)."""

  def __init__(self, num_layers: int, *, drop_path_rate: float = 0.0, rngs: nnx.Rngs, **block):
    rates = [drop_path_rate * i / max(num_layers - 1, 1) for i in range(num_layers)]
    self.layers = nnx.List([Block(**block, drop_path_rate=r, rngs=rngs) for r in rates])

  def __len__(self):
    return len(self.layers)

  def __getitem__(self, i):
    return self.layers[i]

  def __call__(self, x, *, rng=None):
    keys = [None] * len(self.layers) if rng is None else jax.random.split(rng, len(self.layers))
    for layer, key in zip(self.layers, keys):
      x = layer(x, rng=key)
    return x

  def init_cache(self, batch: int, max_len: int):
    return [layer.mixer.init_cache(batch, max_len) for layer in self.layers]

  def step(self, x_t, caches):
    out = []
    for layer, c in zip(self.layers, caches):
      x_t, c = layer.step(x_t, c)
      out.append(c)
    return x_t, out
