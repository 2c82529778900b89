"""Long Range Arena backbones on the shared bidirectional Encoder (models/encoder.py):
`Classifier` (ListOps, Text, Image, Pathfinder) and the retrieval `DualEncoder`.

Front end as in the LRA code: token embedding (N(0, 1) init), an optional learned class token
(zeros) put before the tokens, a position embedding (learned N(0, 0.02), or fixed sinusoids),
dropout. The head is LRA's: Dense(head_dim), ReLU, Dense(classes); the dual encoder's has a
second hidden layer of head_dim // 2 over [u, v, u*v, u-v] ('nli') or [u, v] ('concat').
Mixers see no padding mask (the mixer contract has none); padded positions are left out of
mean pooling, and the class token sits at position 0, so padding only reaches the pooled
vector through the mixers, as in the LRA code's mixers that ignore their padding mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mixers.layers import linear, sharding_scope
from models.blocks import dropout
from models.encoder import POOLING, Encoder, pool

POSITIONS = ('learned', 'sinusoidal')
INTERACTIONS = {'nli': 4, 'concat': 2}  # name -> how many pooled vectors the head reads


def sinusoids(length: int, dim: int) -> np.ndarray:
  """Vaswani et al.'s fixed position table [length, dim] (sines in the first half)."""
  half = dim // 2
  rates = np.exp(-np.log(10_000.0) * np.arange(half) / max(half - 1, 1))
  angles = np.arange(length)[:, None] * rates[None]
  table = np.zeros((length, dim), np.float32)
  table[:, :half], table[:, half:2 * half] = np.sin(angles), np.cos(angles)
  return table


class PooledEncoder(nnx.Module):
  """tokens [batch, length] (+ mask) -> pooled [batch, dim]."""

  def __init__(self, *, vocab_size: int, dim: int, num_layers: int, num_heads: int,
               mlp_dim: int, length: int, mixer: str, mixer_options: dict | None = None,
               pooling: str = 'cls', position: str = 'learned', dropout_rate: float = 0.0,
               scan_layers: bool = False, remat: str = 'none', rngs: nnx.Rngs):
    if pooling not in POOLING:
      raise ValueError(f'model.pooling must be one of {POOLING}, got {pooling!r}')
    if position not in POSITIONS:
      raise ValueError(f'model.position must be one of {POSITIONS}, got {position!r}')
    self.pooling, self.dropout_rate, self.length = pooling, dropout_rate, length
    max_len = length + (pooling == 'cls')
    with sharding_scope():
      self.embed = nnx.Embed(vocab_size, dim, rngs=rngs, embedding_init=nnx.with_partitioning(
          nnx.initializers.normal(1.0), ('vocab', 'embed')))
      self.cls = (nnx.Param(nnx.with_partitioning(nnx.initializers.zeros_init(), ('embed',))(
          rngs.params(), (dim,))) if pooling == 'cls' else None)
      self.pos = (nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.02),
                                                  ('length', 'embed'))(rngs.params(),
                                                                       (max_len, dim)))
                  if position == 'learned' else None)  # sinusoids: a constant in __call__
    try:
      self.encoder = Encoder(dim=dim, num_layers=num_layers, num_heads=num_heads,
                             mlp_dim=mlp_dim, max_len=max_len, mixer=mixer,
                             mixer_options=mixer_options, dropout_rate=dropout_rate,
                             scan_layers=scan_layers, remat=remat, rngs=rngs)
    except (ValueError, TypeError, NotImplementedError) as e:
      raise type(e)(f'mixer {mixer!r} in bidirectional mode (causal=False) at length {max_len} '
                    f'(the data length {length}{" + the class token" if pooling == "cls" else ""})'
                    f' with options {dict(mixer_options or {})}: {e}') from e

  def __call__(self, tokens: jax.Array, mask: jax.Array | None = None, *,
               rng: jax.Array | None = None) -> jax.Array:
    if tokens.shape[1] != self.length:
      raise ValueError(f'the model reads {self.length} tokens, got {tokens.shape[1]}')
    x = self.embed(tokens)
    if self.cls is not None:
      cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (x.shape[0], 1, x.shape[2]))
      x = jnp.concatenate([cls, x], axis=1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    pos = sinusoids(x.shape[1], x.shape[2]) if self.pos is None else self.pos[...]
    x = x + pos.astype(x.dtype)
    keys = (None, None) if rng is None else jax.random.split(rng)
    x = self.encoder(dropout(x, self.dropout_rate, keys[0]), rng=keys[1])
    return pool(x, self.pooling, mask)


def _mlp(sizes: list[int], rngs: nnx.Rngs) -> nnx.List:
  with sharding_scope():
    return nnx.List([linear(a, b, (None, None), rngs=rngs) for a, b in zip(sizes, sizes[1:])])


def _run_mlp(layers, x):
  for i, layer in enumerate(layers):
    x = layer(x) if i == len(layers) - 1 else jax.nn.relu(layer(x))
  return x.astype(jnp.float32)


class Classifier(nnx.Module):
  """tokens [batch, length] -> class scores [batch, num_classes] (float32)."""

  def __init__(self, *, num_classes: int, head_dim: int, rngs: nnx.Rngs, **encoder):
    self.encoder = PooledEncoder(rngs=rngs, **encoder)
    self.head = _mlp([encoder['dim'], head_dim, num_classes], rngs)

  def __call__(self, tokens, mask=None, *, rng=None):
    return _run_mlp(self.head, self.encoder(tokens, mask, rng=rng))


class DualEncoder(nnx.Module):
  """Two texts through one shared encoder: tokens [batch, 2, length] -> scores [batch, classes]."""

  def __init__(self, *, num_classes: int, head_dim: int, interaction: str = 'nli',
               rngs: nnx.Rngs, **encoder):
    if interaction not in INTERACTIONS:
      raise ValueError(f'model.interaction must be one of {sorted(INTERACTIONS)}, got '
                       f'{interaction!r}')
    self.interaction = interaction
    self.encoder = PooledEncoder(rngs=rngs, **encoder)
    dim = encoder['dim']
    self.head = _mlp([INTERACTIONS[interaction] * dim, head_dim, head_dim // 2, num_classes],
                     rngs)

  def features(self, tokens, mask=None, *, rng=None):
    """The head's input: [u, v, u*v, u-v] or [u, v], [batch, k * dim]."""
    b = tokens.shape[0]
    # Both texts in one encoder call (one batch of 2b rows): the same weights by construction.
    flat_mask = None if mask is None else mask.reshape(2 * b, -1)
    pooled = self.encoder(tokens.reshape(2 * b, -1), flat_mask, rng=rng).reshape(b, 2, -1)
    u, v = pooled[:, 0], pooled[:, 1]
    features = [u, v, u * v, u - v] if self.interaction == 'nli' else [u, v]
    return jnp.concatenate(features, axis=-1)

  def __call__(self, tokens, mask=None, *, rng=None):
    return _run_mlp(self.head, self.features(tokens, mask, rng=rng))
