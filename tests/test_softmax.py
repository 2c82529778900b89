"""The softmax baseline (dense and chunked) against the plain dense float64 reference
(mixers/references.py); causality; decoding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
from mixers import references
from mixers.chunked_softmax import chunked_softmax_attention
from mixers.dense_softmax import dense_softmax_attention
from mixers.softmax import choose_implementation, softmax_attention


def qkv(t, seed=0, scale=1.0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [scale * jax.random.normal(k, (2, t, 3, 8)) for k in keys]


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('t', [63, 300])
def test_forward_matches_dense_reference(causal, t):
  q, k, v = qkv(t)
  np.testing.assert_allclose(softmax_attention(q, k, v, causal=causal),
                             references.softmax_attention(q, k, v, causal=causal),
                             atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize('causal', [False, True])
def test_gradient_matches_dense_reference(causal):
  q, k, v = qkv(63)
  w = np.random.default_rng(0).normal(size=q.shape)
  grads = jax.grad(lambda q, k, v: jnp.sum(softmax_attention(q, k, v, causal=causal) * w),
                   argnums=(0, 1, 2))(q, k, v)
  # Reference gradient: central finite differences of the float64 reference along a random
  # direction, compared with the directional derivative from the analytic gradient.
  rng = np.random.default_rng(1)
  f = lambda *a: np.sum(references.softmax_attention(*a, causal=causal) * w)
  for i in range(3):
    d = rng.normal(size=q.shape)
    args_p = [np.asarray(a, np.float64) for a in (q, k, v)]
    args_m = [a.copy() for a in args_p]
    eps = 1e-5
    args_p[i] = args_p[i] + eps * d
    args_m[i] = args_m[i] - eps * d
    numeric = (f(*args_p) - f(*args_m)) / (2 * eps)
    np.testing.assert_allclose(np.sum(np.asarray(grads[i], np.float64) * d), numeric,
                               rtol=1e-3, atol=1e-3)


def build(causal=True, **opts):
  return mixers.build('softmax', dim=24, num_heads=3, max_len=64, causal=causal,
                      rngs=nnx.Rngs(0), **opts)


def test_causality_is_bitwise():
  m = build()
  x = jax.random.normal(jax.random.key(0), (2, 40, 24))
  x2 = x.at[:, 25:].set(jax.random.normal(jax.random.key(1), (2, 15, 24)) * 100)
  np.testing.assert_array_equal(m(x)[:, :25], m(x2)[:, :25])
  assert not np.allclose(m(x)[:, 25:], m(x2)[:, 25:])


def test_bidirectional_sees_the_future():
  m = build(causal=False)
  x = jax.random.normal(jax.random.key(0), (1, 10, 24))
  assert not np.allclose(m(x)[:, :5], m(x.at[:, 9].add(5.0))[:, :5])


@pytest.mark.parametrize('opts', [{}, {'implementation': 'chunked', 'chunk_size': 16}])
def test_decode_equals_parallel(opts):
  m = build(**opts)
  x = jax.random.normal(jax.random.key(0), (2, 37, 24))
  cache = m.init_cache(2, 37)
  step = nnx.jit(lambda m, xt, c: m.step(xt, c))
  ys = []
  for t in range(37):
    y, cache = step(m, x[:, t:t + 1], cache)
    ys.append(y)
  np.testing.assert_allclose(jnp.concatenate(ys, 1), m(x), atol=2e-5, rtol=1e-4)


def test_extreme_and_bfloat16_inputs_finite():
  q, k, v = qkv(50, scale=1e4)
  assert np.isfinite(softmax_attention(q, k, v, causal=True)).all()
  qb, kb, vb = (a.astype(jnp.bfloat16) for a in qkv(50))
  out = softmax_attention(qb, kb, vb, causal=True)
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             references.softmax_attention(*qkv(50), causal=True), atol=5e-2)


def test_longer_than_max_len_is_an_error():
  with pytest.raises(ValueError, match='exceeds max_len=64'):
    build()(jnp.zeros((1, 65, 24)))


def chunked(causal, chunk_size):
  return functools.partial(chunked_softmax_attention, causal=causal, chunk_size=chunk_size)


@functools.partial(jax.jit, static_argnums=0)
def output_and_grads(attention, q, k, v, w):
  """attention(q, k, v) and the gradient of sum(attention * w), in one compiled call."""
  out, vjp = jax.vjp(attention, q, k, v)
  return out, vjp(w.astype(out.dtype))


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('t,chunk', [(63, 16), (300, 64)])
def test_chunked_forward_and_gradient_match_reference(causal, t, chunk):
  """Chunk sizes that do not divide T: the padded tail must be masked out."""
  q, k, v = qkv(t)
  w = np.random.default_rng(0).normal(size=q.shape)
  out, grads = output_and_grads(chunked(causal, chunk), q, k, v, w)
  np.testing.assert_allclose(out, references.softmax_attention(q, k, v, causal=causal),
                             atol=2e-6, rtol=1e-5)
  for g, ref in zip(grads, references.softmax_attention_vjp(q, k, v, w, causal=causal)):
    np.testing.assert_allclose(g, ref, atol=1e-5, rtol=1e-4)


def test_chunked_skips_blocks_above_the_diagonal():
  """NaN values in the last key chunk: a path that computed that block and then masked
  it would give NaN (0 * NaN) for every earlier query chunk, output and gradient."""
  q, k, v = qkv(64)
  w = np.zeros(q.shape)  # a loss on the first three chunks only
  w[:, :48] = np.random.default_rng(0).normal(size=w[:, :48].shape)
  attention = chunked(True, 16)
  clean = output_and_grads(attention, q, k, v, w)
  poisoned = output_and_grads(attention, q, k, v.at[:, 48:].set(jnp.nan), w)
  np.testing.assert_array_equal(poisoned[0][:, :48], clean[0][:, :48])
  np.testing.assert_array_equal(poisoned[1][0][:, :48], clean[1][0][:, :48])  # dq


def test_chunked_extreme_and_bfloat16_inputs():
  attention = chunked(True, 16)
  q, k, v = qkv(50, scale=1e4)
  w = np.ones(q.shape)
  out, grads = output_and_grads(attention, q, k, v, w)
  assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads)
  qb, kb, vb = (a.astype(jnp.bfloat16) for a in qkv(50))
  out, grads = output_and_grads(attention, qb, kb, vb, w)
  assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             references.softmax_attention(*qkv(50), causal=True), atol=5e-2)


@pytest.mark.parametrize('causal', [False, True])
def test_dense_forward_and_gradient_match_reference(causal):
  """The short-sequence path's output and gradient against the float64 reference's."""
  q, k, v = qkv(63)
  w = np.random.default_rng(0).normal(size=q.shape)
  out, grads = output_and_grads(
      functools.partial(dense_softmax_attention, causal=causal), q, k, v, w)
  np.testing.assert_allclose(out, references.softmax_attention(q, k, v, causal=causal),
                             atol=2e-6, rtol=1e-5)
  for g, ref in zip(grads, references.softmax_attention_vjp(q, k, v, w, causal=causal)):
    np.testing.assert_allclose(g, ref, atol=1e-5, rtol=1e-4)


def test_dense_extreme_and_bfloat16_gradients():
  attention = functools.partial(dense_softmax_attention, causal=True)
  w = np.ones((2, 50, 3, 8))
  _, grads = output_and_grads(attention, *qkv(50, scale=1e4), w)
  assert all(np.isfinite(g).all() for g in grads)
  low = [a.astype(jnp.bfloat16) for a in qkv(50)]
  out, grads = output_and_grads(attention, *low, w)
  assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
  wide = references.softmax_attention_vjp(*[np.asarray(a, np.float32) for a in low], w,
                                          causal=True)
  for g, ref in zip(grads, wide):
    np.testing.assert_allclose(np.asarray(g, np.float32), ref, atol=5e-2, rtol=5e-2)


def test_key_bias_changes_nothing_and_gets_no_gradient():
  """The key bias cancels in every softmax row: the mixer leaves it out of the scores."""
  m = build()
  x = jax.random.normal(jax.random.key(0), (2, 20, 24))
  grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x) ** 2)))(m)
  np.testing.assert_array_equal(grads.k.bias[...], 0.0)
  assert np.abs(grads.q.bias[...]).max() > 0
  apply = nnx.jit(lambda m: m(x))
  y = apply(m)
  m.k.bias[...] = jax.random.normal(jax.random.key(1), m.k.bias.shape)
  np.testing.assert_allclose(apply(m), y, atol=1e-5, rtol=1e-5)


def test_automatic_choice_for_float32():
  assert choose_implementation(jnp.zeros((1, 512, 2, 8)), 512) == 'xla'
  assert choose_implementation(jnp.zeros((1, 513, 2, 8)), 512) == 'chunked'


def test_chunked_mixer_equals_dense_mixer_and_is_causal():
  x = jax.random.normal(jax.random.key(0), (2, 40, 24))
  x2 = x.at[:, 25:].set(jax.random.normal(jax.random.key(1), (2, 15, 24)) * 100)
  apply = nnx.jit(lambda m, x: m(x))
  for causal in (False, True):
    m = build(causal, implementation='chunked', chunk_size=16)
    y = apply(m, x)
    np.testing.assert_allclose(y, apply(build(causal, implementation='xla'), x),
                               atol=2e-5, rtol=1e-4)
  y2 = apply(m, x2)  # m, y: the causal mixer
  np.testing.assert_array_equal(y[:, :25], y2[:, :25])
  assert not np.allclose(y[:, 25:], y2[:, 25:])


def test_bad_options_are_errors():
  with pytest.raises(ValueError, match='implementation must be one of'):
    build(implementation='flash')
  with pytest.raises(ValueError, match='chunk_size must be positive'):
    build(chunk_size=0)
