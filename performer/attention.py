"""FAVOR+ (Choromanski et al. 2021): the generic linear-attention engine
(mixers/kernel_attention.py) with positive random features (performer/features.py)."""
from __future__ import annotations

from mixers.kernel_attention import attention_by_heads
from performer.features import feature_map


def favor_attention(q, k, v, w, *, causal: bool, kernel: str = 'softmax',
                    chunk_size: int = 128, block_size: int = 256):
  """FAVOR+ over [batch, length, heads, dh] arrays with projection w: [m, dh].

  The causal backward keeps every block's state (save_every=1): recomputing one from its
  keys costs their random features, [block, m] exponentials, more than the state
  (m x (dh + 1) per head) costs to keep."""
  return attention_by_heads(q, k, v, lambda w: feature_map(w, kernel), (w,), causal=causal,
                            chunk_size=chunk_size, block_size=block_size, save_every=1)
