"""Causal AFT decoding, one position at a time, equal to the parallel causal form.

AFT-simple keeps O(d) state: the running (ref, num, den) sums. AFT-local and
AFT-conv-1d keep those sums for the keys left of the window plus a ring buffer of
the window's keys and values; AFT-full is the same with a window of max_len (its
key/value cache). Shapes carry heads as in aft.banded: q, v [B, h, dh], k [B, h, dk].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.blocks import NEG, lse_merge


def simple_cache(batch: int, dim: int):
  return {'ref': jnp.full((batch, dim), NEG), 'num': jnp.zeros((batch, dim)),
          'den': jnp.zeros((batch, dim))}


def simple_step(cache, q, k, v):
  ref, num, den = lse_merge((cache['ref'], cache['num'], cache['den']),
                            (k, v, jnp.ones_like(k)))
  return jax.nn.sigmoid(q) * num / den, {'ref': ref, 'num': num, 'den': den}


def window_cache(batch: int, size: int, heads: int, dk: int, dh: int):
  return {'ref': jnp.full((batch, heads, dk), NEG), 'num': jnp.zeros((batch, heads, dh)),
          'den': jnp.zeros((batch, heads, dk)), 'k': jnp.full((batch, size, heads, dk), NEG),
          'v': jnp.zeros((batch, size, heads, dh)), 'index': jnp.zeros((), jnp.int32)}


def window_step(cache, q, k, v, bias):
  """Position t = cache['index'] with keys t - size < t' <= t in the window.

  bias(t, positions) gives the [size, h] biases w_tt' of the window's slots; the key
  leaving the window joins the running sums (bias 0 outside the window).
  """
  t, size = cache['index'], cache['k'].shape[1]
  slot = t % size
  full = t >= size  # the slot holds key t - size, which now leaves the window
  ref, num, den = lse_merge(
      (cache['ref'], cache['num'], cache['den']),
      (cache['k'][:, slot], cache['v'][:, slot] * full, jnp.full(k.shape, full, k.dtype)))
  ks = cache['k'].at[:, slot].set(k)
  vs = cache['v'].at[:, slot].set(v)
  pos = t - (slot - jnp.arange(size)) % size
  w = jnp.where((pos >= 0)[:, None], bias(t, jnp.maximum(pos, 0)), NEG)
  mw = jnp.maximum(w.max(axis=0), jnp.where(full, 0., NEG))  # [h]
  top = jnp.maximum(ref, ks.max(axis=1))
  a = jnp.exp(w - mw)[None, :, :, None] * jnp.exp(ks - top[:, None])
  out = jnp.exp(ref - top - mw[:, None])
  y = (num * out + (a * vs).sum(axis=1)) / (den * out + a.sum(axis=1))
  new = {'ref': ref, 'num': num, 'den': den, 'k': ks, 'v': vs, 'index': t + 1}
  return jax.nn.sigmoid(q) * y, new
