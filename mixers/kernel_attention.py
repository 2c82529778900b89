"""Kernelised linear attention over any feature map, bidirectional and causal.

The engine behind `linear` (phi = elu + 1) and `performer` (FAVOR+ random
features, performer/attention.py). The math works on [..., length, *] arrays (any
leading batch/head axes): q_feat, k_feat [..., L, m], v [..., L, dv], and
k_logscale [..., L] (None = 0), a per-key log multiplier: the key features are
k_feat * exp(k_logscale). Outputs are y_i = sum_j A_ij v_j / sum_j A_ij with
A_ij = phi(q_i).phi(k_j), over j <= i when causal.

Values get a column of ones, so numerator and denominator (the paper's C = [V 1])
come out of the same contractions. Key scales multiply the (dv+1)-wide values or
the c x c chunk weights, never a copy of the m-wide key features. Sums run in
float32 at least.

`kernel_attention` runs that math block by block over [batch, length, heads, d] inputs
(mixers/kernel_blocks.py): blocks sliced in place, a backward pass that recomputes them.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mixers import sequence_parallel as sp
from mixers.kernel_blocks import blocked_scan

_NEG = float(jnp.finfo(jnp.float32).min)


def upcast(x: jax.Array) -> jax.Array:
  """At least float32: exponentials and sums never run in bfloat16; float64 stays."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _with_ones(v):
  v = upcast(v)
  return jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], -1)


def _normalise(out, dtype):
  den = out[..., -1:]
  # A zero denominator only comes with a zero numerator (padding, all-zero features).
  return (out[..., :-1] / jnp.where(den == 0, 1.0, den)).astype(dtype)


def _combine(a, b):
  """Adds two key summaries, each held relative to exp(its scale): log-sum-exp style."""
  (sa, ka), (sb, kb) = a, b
  s = jnp.maximum(sa, sb)
  return s, ka * jnp.exp(sa - s) + kb * jnp.exp(sb - s)


def _key_summary(k_feat, v, k_logscale):
  """(scale, sum_j k_j [v_j 1]^T exp(logscale_j - scale)), scale = max logscale."""
  vv = _with_ones(v)
  scale = jnp.zeros(vv.shape[:-2], vv.dtype)
  if k_logscale is not None:
    scale = jax.lax.stop_gradient(jnp.max(k_logscale, axis=-1))  # cancels in the ratio
    vv = vv * jnp.exp(k_logscale - scale[..., None])[..., None]
  return scale, jnp.einsum('...lm,...ld->...md', upcast(k_feat), vv)


def _read(q_feat, kv, dtype):
  return _normalise(jnp.einsum('...lm,...md->...ld', upcast(q_feat), kv), dtype)


def linear_attention(q_feat, k_feat, v, k_logscale=None):
  """Bidirectional: D^-1 (Q' ((K')^T V)); never forms the L x L matrix."""
  return _read(q_feat, _key_summary(k_feat, v, k_logscale)[1], v.dtype)


def causal_linear_attention(q_feat, k_feat, v, *, chunk_size: int = 128, k_logscale=None):
  """Causal linear attention, chunked and parallel in length (see `causal_chunks`)."""
  state = init_state(q_feat.shape[:-2], k_feat.shape[-1], v.shape[-1],
                     jnp.result_type(q_feat, k_feat, v, jnp.float32))
  return causal_chunks(q_feat, k_feat, v, state, chunk_size=chunk_size, k_logscale=k_logscale)[0]


def init_state(batch_shape: tuple[int, ...], m: int, dv: int, dtype=jnp.float32):
  """Causal state: sum_j k_j [v_j 1]^T held relative to exp(scale); constant in length."""
  return {'kv': jnp.zeros((*batch_shape, m, dv + 1), dtype),
          'scale': jnp.full(batch_shape, -jnp.inf, dtype)}


def causal_chunks(q_feat, k_feat, v, state, *, chunk_size: int, k_logscale=None):
  """Causal linear attention after the keys already in `state`; returns (y, new state).

  Stabiliser: s_i = max(state scale, max_{j <= i} k_logscale_j), a running max,
  so no future position. Key j weighs exp(k_logscale_j - s_i) <= 1 for query
  i >= j: exact (every key relative to the query's own s_i) and never
  overflowing. Within a chunk that is the masked c x c form; each chunk's summary
  sum_j k_j [v_j 1]^T (m x (dv+1)) is held relative to the s at the chunk's end,
  and an associative_scan over [state, chunk summaries] rescales while it sums,
  giving each chunk the exclusive prefix and the caller the final state. Memory
  per row of keys: O(L m + L c + (L/c) m dv), never an L x m x dv prefix tensor.
  """
  length = q_feat.shape[-2]
  c = min(chunk_size, length)
  n = -(-length // c)
  def chunks(a, axis, mode='constant'):
    """Pads the length axis to n c (zero keys, scales kept so weights stay <= 1) and
    splits it into [n, c]."""
    axis %= a.ndim
    a = jnp.pad(a, [(0, n * c - length) if i == axis else (0, 0) for i in range(a.ndim)],
                mode=mode)
    return a.reshape(*a.shape[:axis], n, c, *a.shape[axis + 1:])
  qc, kc, vc = (chunks(a, -2) for a in (upcast(q_feat), upcast(k_feat), _with_ones(v)))
  causal = jnp.tril(jnp.ones((c, c), bool))
  if k_logscale is None:
    # Every log-scale 0: s_i = max(state scale, 0) for all i, so lc and sc hold one value
    # per row of the batch ([..., 1, 1]) and the c x c weights are the mask times one factor.
    sc = jax.lax.stop_gradient(jnp.maximum(state['scale'], 0.))[..., None, None]
    lc = jnp.zeros_like(sc)
    weight = causal * jnp.exp(lc - sc)[..., None]
  else:
    s = jax.lax.stop_gradient(jnp.maximum(
        state['scale'][..., None], jax.lax.cummax(k_logscale, axis=k_logscale.ndim - 1)))
    lc, sc = chunks(k_logscale, -1, 'edge'), chunks(s, -1, 'edge')  # [..., n, c]
    # Within chunks: masked Q'K'^T, key j for query i weighted by exp(logscale_j - s_i).
    weight = jnp.exp(jnp.where(causal, lc[..., None, :] - sc[..., :, None], -jnp.inf))
  scores = jnp.einsum('...im,...jm->...ij', qc, kc) * weight
  out = jnp.einsum('...ij,...jd->...id', scores, vc)

  # Across chunks: summaries relative to each chunk's last s, prefix sums after the state.
  last = jnp.broadcast_to(sc[..., -1:, None], (*sc.shape[:-2], n, 1, 1))
  summary = jnp.einsum('...jm,...jd->...md', kc, vc * jnp.exp(lc[..., None] - last))
  s_pre, kv_pre = jax.lax.associative_scan(
      _combine, (jnp.concatenate([state['scale'][..., None, None, None], last], -3),
                 jnp.concatenate([state['kv'][..., None, :, :], summary], -3)),
      axis=summary.ndim - 3)
  inter = jnp.einsum('...im,...md->...id', qc, kv_pre[..., :-1, :, :])
  out = out + inter * jnp.exp(s_pre[..., :-1, :, 0] - sc)[..., None]
  out = out.reshape(*out.shape[:-3], n * c, out.shape[-1])[..., :length, :]
  return _normalise(out, v.dtype), {'kv': kv_pre[..., -1, :, :], 'scale': s_pre[..., -1, 0, 0]}


def linear_attention_step(q_feat, k_feat, v, state, k_logscale=None):
  """One causal position ([..., m], [..., m], [..., dv]): equal to the parallel form."""
  if k_logscale is None:
    k_logscale = jnp.zeros(k_feat.shape[:-1], jnp.float32)
  scale = jnp.maximum(state['scale'], k_logscale)
  vv = _with_ones(v) * jnp.exp(k_logscale - scale)[..., None]
  kv = (state['kv'] * jnp.exp(state['scale'] - scale)[..., None, None]
        + upcast(k_feat)[..., :, None] * vv[..., None, :])
  y = _normalise(jnp.einsum('...m,...md->...d', upcast(q_feat), kv), v.dtype)
  return y, {'kv': kv, 'scale': scale}


def _causal_blocks(make_features: Callable, chunk_size: int):
  """One block of the causal scan: `causal_chunks` continued from the carried state."""
  def block(params, state, blocks, consts, start):
    q_b, k_b, v_b = blocks
    features = make_features(*params)
    (q_feat, _), (k_feat, k_logscale) = features(q_b), features(k_b)
    y, state = causal_chunks(q_feat, k_feat, v_b, state, chunk_size=chunk_size,
                             k_logscale=k_logscale)
    return state, y
  return block


def kernel_attention(q, k, v, make_features: Callable, params=(), *, causal: bool,
                     chunk_size: int = 128, block_size: int = 256, state=None, num_valid=None,
                     save_every: int = 4):
  """Linear attention with phi = make_features(*params) (x -> (feat, logscale)) over
  [batch, length, heads, d] inputs.

  Runs over blocks of `block_size` positions (mixers/kernel_blocks.py): a block's
  features exist only inside its step, each block is sliced from the inputs and its
  output written in place, and the backward pass recomputes the blocks in reverse from
  the state saved at each block's start (per head m x (dv + 1)). Memory beyond the
  inputs: the output, the gradients, (L / block_size) m (dv + 1) per head, and one block's
  O(block_size (m + c)) work. Causal: each block continues `causal_chunks` from the
  previous block's state. Bidirectional: one pass sums the key summary (`key_state`), a
  second reads it.

  state: causal, the keys before these (sequence parallelism); bidirectional, the key
  summary to read instead of this block's own. num_valid: only the first num_valid keys
  count (bidirectional; the rest is padding). save_every: the causal backward keeps the
  state entering every save_every-th block only and recomputes the others from their keys
  (L / (save_every block_size) states; each recomputation costs a block's key features).
  """
  b, _, h, _ = q.shape
  dv = v.shape[-1]
  if causal:
    if state is None:
      state = init_state((b, h), feature_count(make_features(*params), q), dv,
                         jnp.result_type(q, v, jnp.float32))
    return blocked_scan(_causal_blocks(make_features, chunk_size), params, state, (q, k, v),
                        block_size=block_size, out=(dv, v.dtype), save_every=save_every)[1]
  if state is None:
    state = key_state(k, v, make_features, params, block_size=block_size, num_valid=num_valid)

  def read(inputs, carry, blocks, consts, start):
    params, kv = inputs
    return carry, _read(make_features(*params)(blocks[0])[0], kv, v.dtype)
  return blocked_scan(read, (params, state['kv']), (), (q,), block_size=block_size,
                      out=(dv, v.dtype))[1]


def feature_count(features: Callable, x) -> int:
  """m, the number of features `features` makes of x's rows."""
  return jax.eval_shape(features, x[..., :1, :])[0].shape[-1]


def combine_states(a, b):
  """Two key summaries (init_state's form) added: the state after a's keys then b's."""
  scale, kv = _combine((a['scale'][..., None, None], a['kv']), (b['scale'][..., None, None],
                                                                  b['kv']))
  return {'kv': kv, 'scale': scale[..., 0, 0]}


def key_state(k, v, make_features: Callable, params=(), *, block_size: int = 256,
              num_valid=None):
  """The key summary of all of k, v [batch, length, heads, d] (init_state's form), in blocks
  of block_size keys so no L x m tensor is formed; only the first num_valid keys count when
  given."""
  b, length, h, _ = k.shape
  state = init_state((b, h), feature_count(make_features(*params), k), v.shape[-1],
                     jnp.result_type(k, v, jnp.float32))

  def add_keys(params, state, blocks, valid, start):
    k_b, v_b = blocks
    k_feat, k_logscale = make_features(*params)(k_b)
    if num_valid is not None:
      real = start + jnp.arange(k_b.shape[-2]) < valid
      # Padded keys get zero features and the lowest finite log-scale: weight 0, and a block
      # (or a sequence device's whole part) of padding only sums to 0 without a NaN.
      k_feat = k_feat * real[..., None]
      k_logscale = jnp.where(real, 0.0 if k_logscale is None else k_logscale, _NEG)
    scale, kv = _key_summary(k_feat, v_b, k_logscale)
    return combine_states(state, {'kv': kv, 'scale': scale}), None
  valid = () if num_valid is None else jnp.asarray(num_valid, jnp.int32)
  return blocked_scan(add_keys, params, state, (k, v), valid, block_size=block_size)[0]


def attention_by_heads(q, k, v, make_features: Callable, params=(), *, causal: bool,
                       chunk_size: int = 128, block_size: int = 256, save_every: int = 4):
  """kernel_attention over [batch, length, heads, d] arrays, features = make_features(*params).

  Head-major inside, one block at a time (contractions over length need no transposed copy
  of the features, and no transposed copy of the inputs is made). When the mesh splits the
  length over sequence devices, each device runs its own positions from a key summary of
  the others (`_sequence_shard`).
  """
  kw = dict(causal=causal, chunk_size=chunk_size, block_size=block_size, save_every=save_every)
  if sp.shards() == 1:
    return kernel_attention(q, k, v, make_features, params, **kw)
  return sp.sharded(lambda shard, q, k, v, *params: _sequence_shard(
      shard, q, k, v, make_features, params, **kw), (q, k, v), params)


def _sequence_shard(shard, q, k, v, make_features, params, *, causal, chunk_size, block_size,
                    save_every):
  """One sequence device's part: causal, it continues from the key state of the devices
  before it (an exclusive scan of their summaries, m x (dv + 1) each); bidirectional, it
  reads the sum of every device's summary."""
  mine = key_state(k, v, make_features, params, block_size=block_size,
                   num_valid=None if causal else shard.valid)
  if causal:
    empty = {'kv': jnp.zeros_like(mine['kv']), 'scale': jnp.full_like(mine['scale'], -jnp.inf)}
    state = sp.exclusive_scan(combine_states, mine, empty, shard)
  else:
    state = sp.all_combine(mine, 'scale')
  return kernel_attention(q, k, v, make_features, params, causal=causal, chunk_size=chunk_size,
                          block_size=block_size, state=state, save_every=save_every)
