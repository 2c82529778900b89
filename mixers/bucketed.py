"""Shared by the content-based sparse mixers (lsh, routing, sinkhorn).

`masked_attention` is a max-subtracted float32 softmax over gathered keys that also
returns its log-normaliser, so partial results can be merged exactly.
`bucketed_attention` is attention inside chunks of tokens sorted by (bucket, position):
LSH buckets come from random rotations, routing buckets from k-means centroids.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def unit(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / |x| along the last axis; a zero vector stays zero with a finite gradient."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps))


def masked_attention(scores, mask, v):
  """softmax(scores | mask) @ v and the row log-sum-exp, in float32.

  scores, mask: [..., q, k]; v: [..., k, d]. A row with nothing visible gives a zero
  output and lse = -inf, with finite gradients.
  """
  s = jnp.where(mask, scores.astype(jnp.float32), -jnp.inf)
  m = jax.lax.stop_gradient(jnp.max(s, -1, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  p = jnp.exp(s - m)
  total = jnp.sum(p, -1)
  safe = jnp.where(total > 0, total, 1.0)
  out = jnp.einsum('...qk,...kd->...qd', p, v.astype(jnp.float32)) / safe[..., None]
  lse = jnp.where(total > 0, m[..., 0] + jnp.log(safe), -jnp.inf)
  return out, lse


def _slots(sorted_keys, chunk_size: int, causal: bool):
  """Slot of each sorted token in the chunked layout.

  Bidirectional: slots are the sorted order itself (Reformer's packing). Causal: every
  bucket starts a fresh chunk and fills it in position order, so a token's chunk and
  slot depend only on earlier tokens of its bucket; with one global packing, later
  tokens changing bucket would shift the chunk boundaries of earlier ones.
  """
  s = jnp.arange(sorted_keys.shape[-1])
  if not causal:
    return jnp.broadcast_to(s, sorted_keys.shape)
  starts = jnp.concatenate([jnp.ones_like(sorted_keys[..., :1], bool),
                            sorted_keys[..., 1:] != sorted_keys[..., :-1]], -1)
  rank = s - jax.lax.cummax(jnp.where(starts, s, 0), axis=sorted_keys.ndim - 1)
  chunk = jnp.cumsum(rank % chunk_size == 0, -1) - 1
  return chunk * chunk_size + rank % chunk_size


def bucketed_attention(q, k, v, buckets, *, n_buckets: int, chunk_size: int, causal: bool,
                       same_bucket: bool):
  """Softmax attention inside chunks of tokens sorted by (bucket, position).

  q, k, v: [batch, T, heads, dh]; buckets: [batch, heads, rounds, T] ints in [0, n_buckets).
  Per round a query sees the keys of its chunk and of the previous chunk (only those of
  its own bucket when same_bucket or causal; only positions <= its own when causal),
  and itself only when it sees nothing else. Rounds are merged by their log-sum-exp
  weights: a softmax over everything any round saw. Any T: padding sorts last.
  """
  _, t, _, d = q.shape
  dtype = q.dtype
  c = chunk_size
  tp = -(-t // c) * c
  n_chunks = tp // c
  if causal:  # each bucket (and the padding) may leave one chunk part-filled
    n_chunks = (t + min(n_buckets, t) * (c - 1)) // c + 1
  n_slots = n_chunks * c
  # q, k, v travel together: one gather to sorted order, one scatter back in the gradient.
  qkv = jnp.pad(jnp.moveaxis(jnp.concatenate([q, k, v], -1), 2, 1).astype(jnp.float32),
                ((0, 0), (0, 0), (0, tp - t), (0, 0)))               # [b, h, tp, 3d]

  pos = jnp.arange(tp)
  keys = jnp.where(pos < t, jnp.pad(buckets, ((0, 0),) * 3 + ((0, tp - t),)),
                   jnp.iinfo(jnp.int32).max)                          # [b, h, r, tp]
  order = jnp.argsort(keys, axis=-1, stable=True)
  slot = _slots(jnp.take_along_axis(keys, order, -1), c, causal)
  token_slot = jnp.put_along_axis(jnp.zeros_like(order), order, slot, -1, inplace=False)
  empty = jnp.full(keys.shape[:-1] + (n_slots,), tp, order.dtype)
  slot_pos = jnp.put_along_axis(empty, slot, order, -1, inplace=False)  # tp: empty slot
  slot_bucket = jnp.take_along_axis(keys, jnp.minimum(slot_pos, tp - 1), -1)

  def chunked(a):
    return a.reshape(*a.shape[:3], n_chunks, c, *a.shape[4:])

  def with_previous(a, fill):  # keys of a chunk: the previous chunk, then its own
    a = chunked(a)
    prev = jnp.concatenate([jnp.full_like(a[:, :, :, :1], fill), a[:, :, :, :-1]], 3)
    return jnp.concatenate([prev, a], 4)

  qpos = chunked(slot_pos)[..., :, None]
  kpos = with_previous(slot_pos, tp)[..., None, :]
  visible = kpos < t
  if same_bucket or causal:
    qb = chunked(slot_bucket)[..., :, None]
    visible &= qb == with_previous(slot_bucket, -1)[..., None, :]
  if causal:
    visible &= kpos <= qpos
  is_self = kpos == qpos
  others = visible & ~is_self
  mask = jnp.where(jnp.any(others, -1, keepdims=True), others, is_self)

  sq, sk, sv = jnp.split(jnp.take_along_axis(
      qkv[:, :, None], jnp.minimum(slot_pos, tp - 1)[..., None], 3), 3, -1)  # [b, h, r, slots, d]
  scores = jnp.einsum('...qd,...kd->...qk', chunked(sq), with_previous(sk, 0.0))
  out, lse = masked_attention(scores / math.sqrt(d), mask, with_previous(sv, 0.0))
  out = jnp.concatenate([out, lse[..., None]], -1).reshape(*out.shape[:3], n_slots, d + 1)
  out, lse = jnp.split(jnp.take_along_axis(out, token_slot[..., None], 3)[..., :t, :], [d], -1)
  y = jnp.sum(jax.nn.softmax(lse, axis=2) * out, axis=2)            # [b, h, t, d]
  return jnp.moveaxis(y, 1, 2).astype(dtype)
