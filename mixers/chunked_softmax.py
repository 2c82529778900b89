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

Chunks are sliced from the [B, T, H, D] inputs inside the loops and the outputs and
gradients written back in place, so nothing of length T is copied or transposed
(memory beyond the inputs: the output, the gradients, the per-row log-sum-exp).
T not divisible by C is padded to a multiple of C. Padded keys need a mask only
in bidirectional mode (causally they lie after every real query); padded query
rows get a zero cotangent, so they add nothing to any gradient.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _pad(x, c):
  """[B, T, H, D] with T padded by zeros up to a multiple of c (a copy only when needed)."""
  t = x.shape[1]
  return x if t % c == 0 else jnp.pad(x, ((0, 0), (0, -t % c), (0, 0), (0, 0)))


def _block(x, i, c):
  """Chunk i of x [B, T, H, ...] along the length, head-major and float32: [B, H, c, ...].
  Only the chunk is transposed, so the block matmuls need no transposed score block."""
  return jnp.swapaxes(jax.lax.dynamic_slice_in_dim(x, i * c, c, axis=1), 1, 2).astype(
      jnp.float32)


def _put(buffer, i, c, x):
  """Writes a head-major chunk [B, H, c, ...] into buffer [B, T, H, ...] at chunk i."""
  return jax.lax.dynamic_update_slice_in_dim(buffer, jnp.swapaxes(x, 1, 2).astype(buffer.dtype),
                                             i * c, axis=1)


def _scores(a, b, mask):
  """a b^T for one block [B, H, C, C] (q already scaled); mask: None, [C, C] or [C] (keys)."""
  s = jnp.einsum('bhqd,bhkd->bhqk', a, b)
  return s if mask is None else jnp.where(mask, s, -jnp.inf)


def _key_mask(j, c, t):
  """Valid (non-padded) keys of key chunk j, or None when nothing is padded."""
  return None if t % c == 0 else (j * c + jnp.arange(c)) < t


def _forward(q, k, v, causal, c):
  """Chunked forward over [B, T, H, D]: output [B, Tp, H, D] (q's dtype) and lse [B, Tp, H]
  (float32), Tp = T padded to a multiple of c; written in place chunk by chunk."""
  t = q.shape[1]
  q, k, v = (_pad(x, c) for x in (q, k, v))
  n = q.shape[1] // c
  scale = q.shape[-1] ** -0.5
  tril = jnp.tril(jnp.ones((c, c), bool))

  def query_chunk(i, buffers):
    out, lse = buffers
    qi = _block(q, i, c) * scale

    def fold(j, carry, mask):
      """Folds key chunk j into the running (max, normaliser, output) of query chunk i."""
      m, l, acc = carry
      s = _scores(qi, _block(k, j, c), mask)
      m_new = jnp.maximum(m, s.max(-1))  # finite: every block row has a valid key
      p = jnp.exp(s - m_new[..., None])
      scale_old = jnp.exp(m - m_new)
      acc = acc * scale_old[..., None] + jnp.einsum('bhqk,bhkd->bhqd', p, _block(v, j, c))
      return m_new, l * scale_old + p.sum(-1), acc

    carry = (jnp.full(qi.shape[:-1], -jnp.inf), jnp.zeros(qi.shape[:-1]), jnp.zeros_like(qi))
    unmasked = lambda j, cr: fold(j, cr, None)
    if causal:  # key chunks < i in full, then the diagonal block masked; none above it
      carry = jax.lax.fori_loop(0, i, unmasked, carry)
      carry = fold(i, carry, tril)
    elif t % c == 0:
      carry = jax.lax.fori_loop(0, n, unmasked, carry)
    else:  # only the last key chunk holds padding
      carry = jax.lax.fori_loop(0, n - 1, unmasked, carry)
      carry = fold(n - 1, carry, _key_mask(n - 1, c, t))
    m, l, acc = carry
    return _put(out, i, c, acc / l[..., None]), _put(lse, i, c, m + jnp.log(l))

  b, tp, h, _ = q.shape
  return jax.lax.fori_loop(0, n, query_chunk,
                           (jnp.zeros_like(q), jnp.zeros((b, tp, h), jnp.float32)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _attention(q, k, v, causal, chunk_size):
  return _forward(q, k, v, causal, chunk_size)[0][:, :q.shape[1]]


def _attention_fwd(q, k, v, causal, chunk_size):
  out, lse = _forward(q, k, v, causal, chunk_size)
  return out[:, :q.shape[1]], (q, k, v, out, lse)


def _attention_bwd(causal, c, res, dout):
  """Recomputes each score block once; outer loop over key chunks, inner over queries.

  With p = softmax row and delta_i = sum_d dout_i o_i: dv_j = p^T dout,
  ds = p * (dout v^T - delta), dq = ds k * scale, dk = ds^T (q * scale). Nothing of
  length T is copied or transposed: chunks are sliced from the inputs, and dq, dk, dv
  are written in place.
  """
  q, k, v, out, lse = res
  t = q.shape[1]
  q, k, v, dout = (_pad(x, c) for x in (q, k, v, dout))
  n = q.shape[1] // c
  scale = q.shape[-1] ** -0.5
  delta = jnp.einsum('bthd,bthd->bth', dout.astype(jnp.float32), out.astype(jnp.float32))
  tril = jnp.tril(jnp.ones((c, c), bool))
  cols = lambda x, i: _block(x, i, c)[..., None, :]  # [B, H, 1, C]

  def key_chunk(j, grads):
    kj, vj = _block(k, j, c), _block(v, j, c)

    def block(i, carry, mask):
      """Adds query chunk i's contribution to (dk_j, dv_j) and to dq[i]. The blocks are
      held transposed, [keys, queries], so of the five matmuls only dq's contracts over an
      operand's leading axis (dv's and dk's would, with [queries, keys] blocks)."""
      dk, dv, dq = carry
      qi, doi = _block(q, i, c) * scale, _block(dout, i, c)
      p = jnp.exp(_scores(kj, qi, mask) - cols(lse, i))
      dv = dv + jnp.einsum('bhkq,bhqd->bhkd', p, doi)
      ds = p * (jnp.einsum('bhkd,bhqd->bhkq', vj, doi) - cols(delta, i))
      dk = dk + jnp.einsum('bhkq,bhqd->bhkd', ds, qi)
      dq = _put(dq, i, c, _block(dq, i, c) + jnp.einsum('bhkq,bhkd->bhqd', ds, kj) * scale)
      return dk, dv, dq

    dq, dk_all, dv_all = grads
    carry = (jnp.zeros_like(kj), jnp.zeros_like(vj), dq)
    if causal:  # the diagonal block masked, then the query chunks below it in full
      carry = block(j, carry, tril.T)
      carry = jax.lax.fori_loop(j + 1, n, lambda i, cr: block(i, cr, None), carry)
    else:
      mask = _key_mask(j, c, t)
      mask = None if mask is None else mask[:, None]
      carry = jax.lax.fori_loop(0, n, lambda i, cr: block(i, cr, mask), carry)
    dk, dv, dq = carry
    return dq, _put(dk_all, j, c, dk), _put(dv_all, j, c, dv)

  zeros = jnp.zeros(q.shape, jnp.float32)
  dq, dk, dv = jax.lax.fori_loop(0, n, key_chunk, (zeros, zeros, zeros))
  return tuple(g[:, :t].astype(x.dtype) for g, x in ((dq, q), (dk, k), (dv, v)))


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
