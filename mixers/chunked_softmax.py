"""Memory-efficient exact softmax attention: online softmax over chunks.

The idea of Rabe & Staats (2021), "Self-attention Does Not Need O(n^2)
Memory": queries and keys are split into chunks of C positions, and each query
chunk folds in one key chunk at a time, keeping a running row maximum m, a
normaliser l and an unnormalised output. Only one [C, C] score block per head
is alive at once, so memory is O(T dh + C^2) per head, never [T, T].

The backward pass (a custom VJP) stores only the output and the per-row
log-sum-exp, and recomputes each score block: p = exp(s - lse) is then exact
without any running rescale. In causal mode the loops run over the needed
(query chunk, key chunk) pairs only: blocks above the diagonal are never
computed, the diagonal block is the only one masked.

T not divisible by C is padded to a multiple of C. Padded keys need a mask only
in bidirectional mode (causally they lie after every real query); padded query
rows get a zero cotangent, so they add nothing to any gradient.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _to_chunks(x, c):
  """[B, T, H, D] -> [n, B, H, C, D], T padded with zeros up to n * C."""
  b, t, h, d = x.shape
  n = -(-t // c)
  x = jnp.pad(x, ((0, 0), (0, n * c - t), (0, 0), (0, 0)))
  return x.reshape(b, n, c, h, d).transpose(1, 0, 3, 2, 4)


def _from_chunks(x, t):
  """[n, B, H, C, D] -> [B, T, H, D], padding dropped."""
  n, b, h, c, d = x.shape
  return x.transpose(1, 0, 3, 2, 4).reshape(b, n * c, h, d)[:, :t]


def _prepare(q, k, v, c):
  """float32 chunks of q / sqrt(dh), k and v, whatever the input dtype."""
  q = q.astype(jnp.float32) * q.shape[-1] ** -0.5
  return tuple(_to_chunks(x.astype(jnp.float32), c) for x in (q, k, v))


def _scores(qi, kj, mask):
  """Scores of one block (q already scaled); mask: None, [C, C] or [C] (keys)."""
  s = jnp.einsum('bhqd,bhkd->bhqk', qi, kj)
  return s if mask is None else jnp.where(mask, s, -jnp.inf)


def _key_mask(j, c, t):
  """Valid (non-padded) keys of key chunk j, or None when nothing is padded."""
  return None if t % c == 0 else (j * c + jnp.arange(c)) < t


def _forward(q, k, v, causal, c):
  """Chunked forward: outputs [n, B, H, C, D] (float32) and lse [n, B, H, C]."""
  t = q.shape[1]
  qc, kc, vc = _prepare(q, k, v, c)
  n = qc.shape[0]
  tril = jnp.tril(jnp.ones((c, c), bool))

  def fold(qi, j, carry, mask):
    """Folds key chunk j into the running (max, normaliser, output) of one query chunk."""
    m, l, acc = carry
    s = _scores(qi, kc[j], mask)
    m_new = jnp.maximum(m, s.max(-1))  # finite: every block row has a valid key
    p = jnp.exp(s - m_new[..., None])
    scale = jnp.exp(m - m_new)
    return (m_new, l * scale + p.sum(-1),
            acc * scale[..., None] + jnp.einsum('bhqk,bhkd->bhqd', p, vc[j]))

  def query_chunk(_, xs):
    qi, i = xs
    carry = (jnp.full(qi.shape[:-1], -jnp.inf), jnp.zeros(qi.shape[:-1]), jnp.zeros_like(qi))
    unmasked = lambda j, cr: fold(qi, j, cr, None)
    if causal:  # key chunks < i in full, then the diagonal block masked; none above it
      carry = jax.lax.fori_loop(0, i, unmasked, carry)
      carry = fold(qi, i, carry, tril)
    elif t % c == 0:
      carry = jax.lax.fori_loop(0, n, unmasked, carry)
    else:  # only the last key chunk holds padding
      carry = jax.lax.fori_loop(0, n - 1, unmasked, carry)
      carry = fold(qi, n - 1, carry, _key_mask(n - 1, c, t))
    m, l, acc = carry
    return None, (acc / l[..., None], m + jnp.log(l))

  _, (out, lse) = jax.lax.scan(query_chunk, None, (qc, jnp.arange(n)))
  return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _attention(q, k, v, causal, chunk_size):
  out, _ = _forward(q, k, v, causal, chunk_size)
  return _from_chunks(out, q.shape[1]).astype(q.dtype)


def _attention_fwd(q, k, v, causal, chunk_size):
  out, lse = _forward(q, k, v, causal, chunk_size)
  return _from_chunks(out, q.shape[1]).astype(q.dtype), (q, k, v, out, lse)


def _attention_bwd(causal, c, res, dout):
  """Recomputes each score block once; outer loop over key chunks, inner over queries.

  With p = softmax row and delta_i = sum_d dout_i o_i: dv_j = p^T dout,
  ds = p * (dout v^T - delta), dq = ds k * scale, dk = ds^T (q * scale).
  """
  q, k, v, out, lse = res
  t = q.shape[1]
  qc, kc, vc = _prepare(q, k, v, c)
  doc = _to_chunks(dout.astype(jnp.float32), c)
  delta = jnp.sum(doc * out, -1)
  n = qc.shape[0]
  tril = jnp.tril(jnp.ones((c, c), bool))

  def block(kj, vj, i, carry, mask):
    """Adds query chunk i's contribution to (dk_j, dv_j) and to dq[i]."""
    dk, dv, dq = carry
    p = jnp.exp(_scores(qc[i], kj, mask) - lse[i][..., None])
    dv = dv + jnp.einsum('bhqk,bhqd->bhkd', p, doc[i])
    dp = jnp.einsum('bhqd,bhkd->bhqk', doc[i], vj)
    ds = p * (dp - delta[i][..., None])
    dk = dk + jnp.einsum('bhqk,bhqd->bhkd', ds, qc[i])
    dq = dq.at[i].add(jnp.einsum('bhqk,bhkd->bhqd', ds, kj))
    return dk, dv, dq

  def key_chunk(dq, xs):
    kj, vj, j = xs
    carry = (jnp.zeros_like(kj), jnp.zeros_like(vj), dq)
    if causal:  # the diagonal block masked, then the query chunks below it in full
      carry = block(kj, vj, j, carry, tril)
      carry = jax.lax.fori_loop(j + 1, n, lambda i, cr: block(kj, vj, i, cr, None), carry)
    else:
      mask = _key_mask(j, c, t)
      carry = jax.lax.fori_loop(0, n, lambda i, cr: block(kj, vj, i, cr, mask), carry)
    dk, dv, dq = carry
    return dq, (dk, dv)

  dq, (dk, dv) = jax.lax.scan(key_chunk, jnp.zeros_like(qc), (kc, vc, jnp.arange(n)))
  return tuple(_from_chunks(g, t).astype(x.dtype)
               for g, x in ((dq * q.shape[-1] ** -0.5, q), (dk, k), (dv, v)))


_attention.defvjp(_attention_fwd, _attention_bwd)


def chunked_softmax_attention(q, k, v, *, causal: bool, chunk_size: int = 512):
  """softmax(q k^T / sqrt(dh)) v over [batch, length, heads, dh] arrays, in chunks.

  Exact (up to float32 rounding); sums, exponentials and normalisers are float32
  whatever the input dtype, and the output has q's dtype.
  """
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be positive, got {chunk_size}')
  # A chunk longer than the sequence would only add padding.
  return _attention(q, k, v, causal, min(chunk_size, q.shape[1]))
