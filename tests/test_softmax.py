"""The softmax baseline against a plain dense float64 reference; causality; decoding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
from mixers.softmax import softmax_attention


def dense_reference(q, k, v, causal):
  """softmax(q k^T / sqrt(d)) v in float64 numpy; [B, T, H, D] arrays."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  s = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  if causal:
    t = q.shape[1]
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum('bhqk,bkhd->bqhd', p, v)


def qkv(t, seed=0, scale=1.0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [scale * jax.random.normal(k, (2, t, 3, 8)) for k in keys]


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('t', [63, 300])
def test_forward_matches_dense_reference(causal, t):
  q, k, v = qkv(t)
  np.testing.assert_allclose(softmax_attention(q, k, v, causal=causal),
                             dense_reference(q, k, v, causal), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize('causal', [False, True])
def test_gradient_matches_dense_reference(causal):
  q, k, v = qkv(63)
  w = np.random.default_rng(0).normal(size=q.shape)
  grads = jax.grad(lambda q, k, v: jnp.sum(softmax_attention(q, k, v, causal=causal) * w),
                   argnums=(0, 1, 2))(q, k, v)
  # Reference gradient: central finite differences of the float64 reference along a random
  # direction, compared with the directional derivative from the analytic gradient.
  rng = np.random.default_rng(1)
  f = lambda *a: np.sum(dense_reference(*a, causal) * w)
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
  with nnx.use_eager_sharding(False):
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


def test_decode_equals_parallel():
  m = build()
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
                             dense_reference(*qkv(50), True), atol=5e-2)


def test_longer_than_max_len_is_an_error():
  with pytest.raises(ValueError, match='exceeds max_len=64'):
    build()(jnp.zeros((1, 65, 24)))
