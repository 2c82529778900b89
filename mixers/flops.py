"""Model FLOPs of a mixer's forward pass, counted analytically from its math (not its kernels),
keyed by registered mixer name: the figure MFU is measured against.

A multiply-add counts 2 FLOPs (a [m, k] x [k, n] product: 2mkn). Every mixer here projects
q, k, v and the output with [dim, dim] matrices (4 x 2 B T dim^2) and mixes as follows:
  softmax      QK^T and AV over the attended pairs: 4 B H pairs dh = 4 B pairs dim; causal attends
               T(T+1)/2 pairs, bidirectional T^2 (the T^2 work a masked kernel skips is not model
               work, so a dense causal kernel shows as lower MFU).
  aft_full     exp(w) applied to exp(K) V and to exp(K): 2 x 2 B pairs dim, plus w = U V^T
               (2 T^2 bias_dim; a dense w: none) and 2 elementwise passes over B T dim.
  aft_local    AFT-simple's global sums plus the learned-bias correction inside the window:
               2 x 2 B band-pairs dim (pairs with |t - t'| < window) + the band of U V^T.
  aft_simple   softmax(K) V summed over positions: O(B T dim) elementwise (6 B T dim) - no T^2,
               no dim^2 beyond the projections: AFT does not follow the 6N rule.
  performer    FAVOR+: the feature maps of Q and K (2 x 2 B T dim m), phi(K)^T V and phi(Q)(..)
               (2 x 2 B T m dim) and the normaliser (2 x 2 B T H m): linear in T, and its
               random projection is a Buffer, not a parameter, so 6N undercounts it too.
  linear       elu+1 features (m = dh): 2 x 2 B T dh dim + the normaliser.
A mixer without an entry raises FlopsUnknown (MFU is then omitted, never guessed).
"""
from __future__ import annotations

from typing import Callable


class FlopsUnknown(Exception):
  """No FLOPs formula for this mixer (or model): MFU cannot be stated."""


FORMULAS: dict[str, Callable[..., float]] = {}


def formula(name: str):
  def wrap(fn):
    FORMULAS[name] = fn
    return fn
  return wrap


def mixer_flops(name: str, *, batch: int, length: int, dim: int, num_heads: int, causal: bool,
                **options) -> float:
  """Forward FLOPs of mixer `name` on [batch, length, dim] with its options."""
  if name not in FORMULAS:
    raise FlopsUnknown(f'FLOPs unknown for mixer {name!r} (no formula in mixers/flops.py; '
                       f'known: {", ".join(sorted(FORMULAS))}): MFU omitted')
  return float(FORMULAS[name](batch=batch, length=length, dim=dim, num_heads=num_heads,
                              causal=causal, **options))


def projections(batch: int, length: int, dim: int, n: int = 4, out: int | None = None) -> float:
  """n [dim, out or dim] projections of batch x length positions."""
  return n * 2.0 * batch * length * dim * (out or dim)


def pairs(length: int, causal: bool, window: int | None = None) -> int:
  """(t, t') pairs attended: t' <= t when causal, |t - t'| < window when a window is given."""
  if window is None:
    return length * (length + 1) // 2 if causal else length * length
  w = min(window, length)
  one_sided = w * length - w * (w - 1) // 2  # sum over t of min(t + 1, w)
  return one_sided if causal else 2 * one_sided - length


@formula('softmax')
def _softmax(*, batch, length, dim, causal, **_):
  return projections(batch, length, dim) + 4.0 * batch * pairs(length, causal) * dim


def _pair_bias(length, bias_dim, band):
  return 0.0 if bias_dim is None else 2.0 * band * bias_dim


@formula('aft_full')
def _aft_full(*, batch, length, dim, causal, bias_dim=64, **_):
  n = pairs(length, causal)
  return (projections(batch, length, dim) + 4.0 * batch * n * dim + _pair_bias(length, bias_dim, n)
          + 2.0 * batch * length * dim)


@formula('aft_simple')
def _aft_simple(*, batch, length, dim, **_):
  return projections(batch, length, dim) + 6.0 * batch * length * dim


@formula('aft_local')
def _aft_local(*, batch, length, dim, causal, window=32, bias_dim=64, **_):
  if window == 0:
    return _aft_simple(batch=batch, length=length, dim=dim)
  band = pairs(length, causal, window)
  return (_aft_simple(batch=batch, length=length, dim=dim) + 4.0 * batch * band * dim
          + _pair_bias(length, bias_dim, band))


@formula('performer')
def _performer(*, batch, length, dim, num_heads, num_features=256, **_):
  m = num_features
  return (projections(batch, length, dim) + 2 * 2.0 * batch * length * dim * m
          + 2 * 2.0 * batch * length * m * dim + 2 * 2.0 * batch * length * num_heads * m)


@formula('linear')
def _linear(*, batch, length, dim, num_heads, **_):
  dh = dim // num_heads
  return (projections(batch, length, dim) + 2 * 2.0 * batch * length * dh * dim
          + 2 * 2.0 * batch * length * dim)
