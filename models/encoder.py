"""Bidirectional encoder for classification backbones (ViT/DeiT, Long Range Arena):
pre-LN blocks of any mixer in bidirectional mode, a final LayerNorm and pooling.

The front end (patches, token embeddings, class token, position embedding) and the head
belong to each backbone; this module is what they share.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.layers import layer_norm, sharding_scope
from models.blocks import Stack

POOLING = ('cls', 'mean')


class Encoder(nnx.Module):
  """x [batch, length, dim] -> LayerNorm(blocks(x)) [batch, length, dim]."""

  def __init__(self, *, dim: int, num_layers: int, num_heads: int, mlp_dim: int, max_len: int,
               mixer: str, mixer_options: dict | None = None, dropout_rate: float = 0.0,
               drop_path_rate: float = 0.0, scan_layers: bool = False, remat: str = 'none',
               rngs: nnx.Rngs):
    """scan_layers, remat: the layers' layout (models.blocks.Stack)."""
    with sharding_scope():  # buildable outside a mesh too (then unsharded)
      self._build(dim, num_layers, num_heads, mlp_dim, max_len, mixer, mixer_options,
                  dropout_rate, drop_path_rate, rngs, dict(scan_layers=scan_layers, remat=remat))

  def _build(self, dim, num_layers, num_heads, mlp_dim, max_len, mixer, mixer_options,
             dropout_rate, drop_path_rate, rngs, layout):
    self.blocks = Stack(num_layers, dim=dim, num_heads=num_heads, mlp_dim=mlp_dim,
                        max_len=max_len, causal=False, mixer=mixer,
                        mixer_options=dict(mixer_options or {}), dropout_rate=dropout_rate,
                        drop_path_rate=drop_path_rate, rngs=rngs, **layout)
    self.norm = layer_norm(dim, rngs=rngs)

  def __call__(self, x: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
    return self.norm(self.blocks(x, rng=rng))


def pool(x: jax.Array, how: str, mask: jax.Array | None = None) -> jax.Array:
  """[batch, length, dim] -> [batch, dim]: 'cls' takes position 0 (the class token); 'mean'
  averages the positions where mask [batch, length] is nonzero (all when mask is None)."""
  if how == 'cls':
    return x[:, 0]
  if how != 'mean':
    raise ValueError(f'pooling must be one of {POOLING}, got {how!r}')
  if mask is None:
    return jnp.mean(x, axis=1)
  m = mask.astype(x.dtype)[..., None]
  return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
