"""The sequential-scan formulation of causal FAVOR+, as the JAX Performer in common use
writes it: one lax.scan step per position carrying the m x d prefix state, a custom
gradient that walks the positions backwards (recovering each prefix state by
subtraction, so memory stays O(m d) per sequence), and key features stabilised by their
maximum over the whole sequence (which, unlike ours, depends on future keys). A bench
peer only: same features, same projections, different causal engine.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def causal_numerator(qs, ks, vs):
  """out_t = q_t^T sum_{j<=t} k_j v_j^T; qs, ks [L, ..., m], vs [L, ..., dv]."""
  return _forward(qs, ks, vs)[0]


def _forward(qs, ks, vs):
  def body(state, x):
    q, k, v = x
    state = state + k[..., :, None] * v[..., None, :]
    return state, jnp.einsum('...m,...md->...d', q, state)

  state0 = jnp.zeros(ks.shape[1:] + vs.shape[-1:], vs.dtype)
  state, out = jax.lax.scan(body, state0, (qs, ks, vs))
  return out, state


def _fwd(qs, ks, vs):
  out, state = _forward(qs, ks, vs)
  return out, (qs, ks, vs, state)


def _bwd(residuals, dout):
  qs, ks, vs, state = residuals

  def body(carry, x):
    state, grad = carry  # state: sum_{j<=t} k_j v_j^T; grad: sum_{i>=t} q_i dout_i^T
    q, k, v, dy = x
    dq = jnp.einsum('...md,...d->...m', state, dy)
    grad = grad + q[..., :, None] * dy[..., None, :]
    dk = jnp.einsum('...md,...d->...m', grad, v)
    dv = jnp.einsum('...md,...m->...d', grad, k)
    return (state - k[..., :, None] * v[..., None, :], grad), (dq, dk, dv)

  _, (dq, dk, dv) = jax.lax.scan(body, (state, jnp.zeros_like(state)),
                                 (qs, ks, vs, dout), reverse=True)
  return dq, dk, dv


causal_numerator.defvjp(_fwd, _bwd)


def favor_scan(q_feat, k_feat, v, k_logscale):
  """Causal FAVOR+ over [B, L, H, *]: k_feat * exp(k_logscale - max over all L), then the
  per-position scan on [v 1] (numerator and normaliser in one pass)."""
  top = jax.lax.stop_gradient(jnp.max(k_logscale, axis=1, keepdims=True))
  k_feat = k_feat * jnp.exp(k_logscale - top)[..., None]
  vv = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], -1)
  lead = lambda a: jnp.moveaxis(a, 1, 0)
  out = jnp.moveaxis(causal_numerator(lead(q_feat), lead(k_feat), lead(vv)), 0, 1)
  return out[..., :-1] / out[..., -1:]
