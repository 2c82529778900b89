"""FAVOR+ (Choromanski et al. 2021): the generic linear-attention engine
(mixers/kernel_attention.py) with positive random features (performer/features.py)."""
from __future__ import annotations

import jax.numpy as jnp

from mixers.kernel_attention import kernel_attention
from performer.features import feature_map


def favor_attention(q, k, v, w, *, causal: bool, kernel: str = 'softmax',
                    chunk_size: int = 128, block_size: int = 1024):
  """FAVOR+ over [batch, length, heads, dh] arrays with projection w: [m, dh].

  Runs head-major ([batch, heads, length, *]), where the contractions over
  length need no transposed copy of the features.
  """
  q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
  y = kernel_attention(q, k, v, feature_map(w, kernel), causal=causal, chunk_size=chunk_size,
                       block_size=block_size)
  return jnp.swapaxes(y, 1, 2)
