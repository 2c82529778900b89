"""AFT with the length split over sequence devices (mixers/sequence_parallel.py): exact.

Every AFT sum is sum_t' exp(K_t' + w_tt') V_t' with w = 0 (weight 1) outside a band
-left <= t' - t <= right (AFT-simple: an empty band). So a device needs, besides its own
positions: the `left` positions before it and the `right` after it (halos from its
neighbours), and two log-sum-exp summaries (ref, num, den) of everything further away,
O(d) numbers each: the devices before it combined by an exclusive scan, those after it by
the reverse scan (bidirectional only). A summary enters as one extra key placed just
outside the band, exp(k*) v* = exp(ref) num with k* = ref + log den and v* = num / den, so
the mixer's own single-device function runs unchanged on
[past summary, left halo, own positions, right halo, future summary] and the own
positions' outputs are kept. Its stabilisers stay what they were: the summary's ref is a
maximum over earlier keys only when causal.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from aft.blocks import NEG, lse_merge
from mixers import sequence_parallel as sp


def _summary(k, v, keep):
  """(ref, num, den) of keys k [B, L, h, 1] and values v [B, L, h, dv] where keep [L]."""
  keep = keep[None, :, None, None]
  k = jnp.where(keep, k, NEG)
  ref = jax.lax.stop_gradient(k.max(axis=1))  # [B, h, 1]
  e = jnp.where(keep, jnp.exp(k - ref[:, None]), 0.)
  return ref, (e * v).sum(axis=1), e.sum(axis=1)


def _as_key(summary, B, v_width):
  """The summary as one key [B, 1, h] and value [B, 1, v_width]; weight 0 when empty."""
  ref, num, den = summary
  some = den > 0
  safe = jnp.where(some, den, 1.)
  k = jnp.where(some, ref + jnp.log(safe), NEG)
  return k.reshape(B, 1, -1), (num / safe).reshape(B, 1, v_width)


def _identity(summary):
  ref, num, den = summary
  return jnp.full_like(ref, NEG), jnp.zeros_like(num), jnp.zeros_like(den)


def _local(shard, q, k, v, *params, mix, left, right, causal):
  B, size, width = v.shape
  keys = k.shape[-1]  # one key per channel (d) or per head (AFT-conv)
  real = shard.real()
  k = jnp.where(real[None, :, None], k, NEG)  # end padding: weight 0
  k4, v4 = k[..., None], v.reshape(B, size, keys, -1)
  pos = jnp.arange(size)
  full = _summary(k4, v4, real)
  empty = _identity(full)
  # Everything before this device's last `left` keys, handed to the next device.
  before = sp.exclusive_scan(lse_merge, full, empty, shard)
  past = sp.shifted(lse_merge(before, _summary(k4, v4, real & (pos < size - left))), empty,
                    shard, 1)
  parts_k, parts_v = [], []
  pk, pv = _as_key(past, B, width)
  parts_k += [pk, sp.halo(k, left, shard, fill=NEG), k]
  parts_v += [pv, sp.halo(v, left, shard), v]
  if not causal:
    after = sp.exclusive_scan(lse_merge, full, empty, shard, reverse=True)
    future = sp.shifted(lse_merge(_summary(k4, v4, real & (pos >= right)), after), empty,
                        shard, -1)
    fk, fv = _as_key(future, B, width)
    parts_k += [sp.halo(k, right, shard, fill=NEG, after=True), fk]
    parts_v += [sp.halo(v, right, shard, after=True), fv]
  k_ext, v_ext = jnp.concatenate(parts_k, 1), jnp.concatenate(parts_v, 1)
  start = 1 + left
  q_ext = jnp.pad(q, ((0, 0), (start, k_ext.shape[1] - start - size), (0, 0)))
  # Global position of every extended row (the summaries' rows lie outside every band).
  positions = shard.offset - start + jnp.arange(k_ext.shape[1])
  return mix(q_ext, k_ext, v_ext, positions, *params)[:, start:start + size]


def sharded_aft(mix: Callable, q, k, v, params=(), *, left: int, right: int, causal: bool):
  """mix(q, k, v, positions, *params) -> outputs, an AFT function over [B, L, *] arrays
  whose band is -left <= t' - t <= right (right = 0 when causal), run with the length
  split over the sequence devices. k: [B, L, keys], v: [B, L, keys * dv]."""
  return sp.sharded(lambda shard, *a: _local(shard, *a, mix=mix, left=left,
                                             right=0 if causal else right, causal=causal),
                    (q, k, v), params)
