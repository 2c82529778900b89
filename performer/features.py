"""Random feature maps for FAVOR+ (Choromanski et al. 2021, Sec. 2.2-2.4) as pure functions.

Every map returns `(feat, logscale)` with phi(x) = feat * exp(logscale)[..., None]
(logscale None = 0): `feat` is bounded for the softmax kernels whatever x is, and
`logscale` is a per-row log multiplier. A per-row multiplier cancels in attention
for queries, so queries use `feat` alone; for keys the attention functions turn
`logscale` into a safe shift (global max when bidirectional, running max when
causal). The maps see raw vectors; `feature_map` applies the d^-1/4 scaling that
turns exp(q'.k') into the softmax kernel exp(q.k / sqrt(d)).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from mixers.kernel_attention import upcast


def random_projection(key: jax.Array, num_features: int, dim: int, *, orthogonal: bool = True,
                      scaling: str = 'chi') -> jax.Array:
  """w_1..w_m as rows of an [m, d] matrix, each marginally N(0, I_d).

  Draws i.i.d. Gaussian rows in d x d blocks (the last block truncated); with
  `orthogonal`, Gram-Schmidt (a QR) makes each block exactly orthogonal and the
  rows get back their own Gaussian lengths, which are chi-distributed ('chi':
  rows stay N(0, I_d), so the estimator stays unbiased), or all get sqrt(d)
  ('sqrt_d', the paper's regularised variant). The same key gives the i.i.d.
  rows the orthogonal ones are made from, so the two compare pairwise.
  """
  if scaling not in ('chi', 'sqrt_d'):
    raise ValueError(f"scaling must be 'chi' or 'sqrt_d', got {scaling!r}")
  blocks = -(-num_features // dim)
  g = jax.random.normal(key, (blocks, dim, dim))
  if not orthogonal:
    return g.reshape(blocks * dim, dim)[:num_features]
  q, r = jnp.linalg.qr(jnp.swapaxes(g, -1, -2))
  # diag(R) > 0 makes the QR exactly Gram-Schmidt of g's rows (uniformly random directions).
  rows = jnp.swapaxes(q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :], -1, -2)
  norms = jnp.linalg.norm(g, axis=-1) if scaling == 'chi' else jnp.full(g.shape[:-1], dim ** 0.5)
  return (rows * norms[..., None]).reshape(blocks * dim, dim)[:num_features]


def _positive(logits: jax.Array, eps: float):
  """exp(logits)/sqrt(m) + eps*exp(row max)/sqrt(m), split as (bounded feat, row max).

  The row max is a stabiliser, held constant under differentiation.
  """
  top = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
  root_m = math.sqrt(logits.shape[-1])
  return jnp.exp(logits - (top + math.log(root_m))[..., None]) + eps / root_m, top


def positive_features(x: jax.Array, w: jax.Array, *, eps: float = 1e-6):
  """SM+ (Lemma 1): phi(x) = exp(w^T x - |x|^2/2)/sqrt(m); E phi(x).phi(y) = exp(x.y).

  eps (the paper's stabiliser 1e-6, relative to the row's largest feature) keeps
  every attention denominator positive when features underflow.
  """
  x = upcast(x)
  return _positive(x @ w.T - 0.5 * jnp.sum(x * x, -1, keepdims=True), eps)


def hyperbolic_features(x: jax.Array, w: jax.Array, *, eps: float = 1e-6):
  """SM^hyp+: phi(x) = exp(-|x|^2/2)/sqrt(2m) (exp(w^T x), exp(-w^T x)); 2m features."""
  x = upcast(x)
  u = x @ w.T
  half_sq = 0.5 * jnp.sum(x * x, -1, keepdims=True)
  return _positive(jnp.concatenate([u, -u], -1) - half_sq, eps)


def trig_features(x: jax.Array, w: jax.Array):
  """SM^trig: phi(x) = exp(|x|^2/2)/sqrt(m) (sin(w^T x), cos(w^T x)); 2m features.

  Unbiased but can be negative, so attention denominators can cross zero: for
  comparison only.
  """
  x = upcast(x)
  u = x @ w.T
  feat = jnp.concatenate([jnp.sin(u), jnp.cos(u)], -1) / math.sqrt(w.shape[0])
  return feat, 0.5 * jnp.sum(x * x, -1)


def generalized_features(x: jax.Array, w: jax.Array, *,
                         fn: Callable[[jax.Array], jax.Array] = jax.nn.relu,
                         eps: float = 1e-3):
  """Generalised attention (Sec. 2.2): phi(x) = fn(w^T x) + eps, any non-negative fn.

  The paper's defaults: fn = ReLU, eps = 1e-3. No row scale (logscale None).
  """
  return fn(upcast(x) @ w.T) + eps, None


KERNELS: dict[str, Callable] = {
    'softmax': positive_features,
    'hyperbolic': hyperbolic_features,
    'trig': trig_features,
    'relu': generalized_features,
    'elu': functools.partial(generalized_features, fn=lambda u: jax.nn.elu(u) + 1.0, eps=0.0),
}


def feature_map(w: jax.Array, kernel: str = 'softmax') -> Callable:
  """FAVOR+'s map x [..., d] -> (feat, logscale): the kernel's features of x d^-1/4."""
  fn = KERNELS[kernel]
  return lambda x: fn(upcast(x) * x.shape[-1] ** -0.25, w)
