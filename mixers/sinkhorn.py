"""Sparse Sinkhorn attention (Tay et al. 2020): a small sorting network scores
block-to-block affinities, Sinkhorn normalisation turns them into a soft permutation of
blocks, and each block attends to its sorted block and to itself."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Mixer, check_length
from mixers.bucketed import masked_attention
from mixers.layers import linear
from mixers.registry import register


def _logsumexp(x, axis):
  """Max-subtracted log-sum-exp (keepdims) that gives 0, not NaN, for an all -inf slice."""
  m = jax.lax.stop_gradient(jnp.max(x, axis, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  total = jnp.sum(jnp.exp(x - m), axis, keepdims=True)
  return jnp.where(total > 0, m + jnp.log(jnp.where(total > 0, total, 1.0)), 0.0)


def sinkhorn(log_alpha, iters: int, causal: bool):
  """log P of a soft permutation from block logits [..., N, N].

  `iters` rounds of row then column normalisation in log space, and a last row step, so
  every row sums to 1 (a sorted block is a convex mix of blocks). Causal: row i keeps
  only past blocks j < i, and columns are normalised over rows <= i (a running sum), as a
  whole-column sum would carry later blocks' scores into earlier rows. Row 0 is empty.
  """
  n = log_alpha.shape[-1]
  log_p = log_alpha.astype(jnp.float32)
  if causal:
    log_p = jnp.where(jnp.tri(n, k=-1, dtype=bool), log_p, -jnp.inf)

  def columns(x):
    if not causal:
      return x - _logsumexp(x, -2)
    running = jnp.cumsum(jnp.exp(x), -2)  # x <= 0 after a row step: no overflow
    return x - jnp.log(jnp.where(running > 0, running, 1.0))

  log_p = jax.lax.fori_loop(0, iters, lambda _, x: columns(x - _logsumexp(x, -1)), log_p)
  return log_p - _logsumexp(log_p, -1)


def sinkhorn_attention(q, k, v, perm, *, block_size: int, causal: bool):
  """Block i attends to sorted block sum_j perm[i, j] * block j and to itself.

  q, k, v: [batch, T, heads, dh]; perm: [batch, heads, N, N] with N = ceil(T / block_size),
  soft or hard. Any T: padded slots of the last block are left out of each sorted slot's
  mix, and the slot's softmax weight is scaled by its share of real tokens. Causal: the
  own block is masked by position (perm should mix only past blocks, see `sinkhorn`).
  """
  _, t, _, d = q.shape
  n = -(-t // block_size)
  tp = n * block_size

  def blocks(a):  # [b, t, h, d] -> [b, h, n, block, d], zero-padded
    a = jnp.pad(jnp.moveaxis(a, 2, 1).astype(jnp.float32), ((0, 0), (0, 0), (0, tp - t), (0, 0)))
    return a.reshape(*a.shape[:2], n, block_size, d)

  qb, kb, vb = blocks(q), blocks(k), blocks(v)
  pos = jnp.arange(tp).reshape(n, block_size)
  perm = perm.astype(jnp.float32)
  mass = jnp.einsum('bhij,js->bhis', perm, (pos < t).astype(jnp.float32))
  safe = jnp.where(mass > 0, mass, 1.0)[..., None]
  ks, vs = (jnp.einsum('bhij,bhjsd->bhisd', perm, a) / safe for a in (kb, vb))
  sorted_scores = (jnp.einsum('...qd,...kd->...qk', qb, ks) / math.sqrt(d)
                   + jnp.log(safe[..., 0])[..., None, :])
  own_scores = jnp.einsum('...qd,...kd->...qk', qb, kb) / math.sqrt(d)
  own = pos[:, None, :] < t
  if causal:
    own &= pos[:, None, :] <= pos[:, :, None]
  scores = jnp.concatenate([sorted_scores, own_scores], -1)
  mask = jnp.concatenate([jnp.broadcast_to((mass > 0)[..., None, :], sorted_scores.shape),
                          jnp.broadcast_to(own, own_scores.shape)], -1)
  out, _ = masked_attention(scores, mask, jnp.concatenate([vs, vb], -2))
  out = out.reshape(*out.shape[:2], tp, d)[:, :, :t]
  return jnp.moveaxis(out, 1, 2).astype(q.dtype)


@register('sinkhorn')
class SinkhornAttention(Mixer):
  """Sparse Sinkhorn attention. The sorting network scores block pairs bilinearly from
  the blocks' mean inputs, so any number of blocks works; in causal mode a block's row
  is scored from the mean of all earlier tokens. Training adds Gumbel noise to the
  logits; the temperature applies in training and evaluation alike."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               block_size: int = 64, sinkhorn_iters: int = 8, temperature: float = 0.75):
    if dim % num_heads:
      raise ValueError(f'sinkhorn: dim={dim} is not divisible by num_heads={num_heads}')
    for name, value, low in (('block_size', block_size, 1), ('sinkhorn_iters', sinkhorn_iters, 0)):
      if value < low:
        raise ValueError(f'sinkhorn: {name} must be >= {low}, got {value}')
    if not temperature > 0:
      raise ValueError(f'sinkhorn: temperature must be > 0, got {temperature}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.block_size, self.sinkhorn_iters, self.temperature = block_size, sinkhorn_iters, temperature
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    self.sort_hidden = linear(dim, dim, ('embed', 'mlp'), rngs=rngs)
    # Like the MLP's down projection: ('mlp', 'heads') would map two axes to one mesh axis.
    self.sort_rows, self.sort_cols = (linear(dim, dim, ('mlp', 'embed'), rngs=rngs)
                                      for _ in range(2))

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.num_heads, -1)

  def sort_logits(self, x):
    """Block-to-block affinities [batch, heads, N, N] from the blocks' mean inputs."""
    b, t, dim = x.shape
    n = -(-t // self.block_size)
    pad = n * self.block_size - t
    sums = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, pad), (0, 0))).reshape(
        b, n, self.block_size, dim).sum(2)
    counts = jnp.minimum(t - self.block_size * jnp.arange(n), self.block_size)[:, None]
    cols = sums / counts
    rows = cols
    if self.causal:  # a row sees only the tokens before its block (an exclusive prefix sum)
      before = jnp.cumsum(jnp.pad(sums[:, :-1], ((0, 0), (1, 0), (0, 0))), 1)
      rows = before / jnp.maximum(self.block_size * jnp.arange(n), 1)[:, None]
    r, c = (self._heads(f(jax.nn.relu(self.sort_hidden(z))))
            for f, z in ((self.sort_rows, rows), (self.sort_cols, cols)))
    return jnp.einsum('bihd,bjhd->bhij', r, c) / math.sqrt(r.shape[-1])

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'sinkhorn')
    q, k, v = (self._heads(f(x)) for f in (self.q, self.k, self.v))
    logits = self.sort_logits(x)
    if rng is not None:
      logits = logits + jax.random.gumbel(rng, logits.shape, jnp.float32)
    perm = jnp.exp(sinkhorn(logits / self.temperature, self.sinkhorn_iters, self.causal))
    y = sinkhorn_attention(q, k, v, perm, block_size=self.block_size, causal=self.causal)
    return self.out(y.reshape(x.shape))
