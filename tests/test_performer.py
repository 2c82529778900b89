"""Performer / FAVOR+: features, attention against the dense float64 references
(mixers/references.py), the mixer."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixers import references
from mixers.base import Buffer, update_all_buffers
from mixers.kernel_attention import causal_linear_attention, linear_attention
from mixers.registry import build, options
from performer.attention import favor_attention
from performer.features import (KERNELS, hyperbolic_features, positive_features,
                                 random_projection, trig_features)


def normal(seed, *shape, scale=1.0):
  return scale * np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- features

UNBIASED = {
    'softmax': functools.partial(positive_features, eps=0.0),
    'hyperbolic': functools.partial(hyperbolic_features, eps=0.0),
    'trig': trig_features,
}


@pytest.mark.parametrize('kernel,orthogonal', [
    ('softmax', True), ('softmax', False), ('hyperbolic', True), ('trig', False)])
def test_features_unbiased(kernel, orthogonal):
  d, m, draws = 8, 16, 4000
  x, y = normal(0, d, scale=0.3), normal(1, d, scale=0.3)
  keys = jax.random.split(jax.random.key(3), draws)

  def estimate(key):
    w = random_projection(key, m, d, orthogonal=orthogonal)
    (fx, lx), (fy, ly) = UNBIASED[kernel](jnp.asarray(x), w), UNBIASED[kernel](jnp.asarray(y), w)
    return (fx * jnp.exp(lx)) @ (fy * jnp.exp(ly))

  est = np.asarray(jax.jit(jax.vmap(estimate))(keys), np.float64)
  stderr = est.std() / np.sqrt(draws)
  assert stderr < 0.05 * np.exp(x @ y)  # the check below has power
  assert abs(est.mean() - np.exp(x @ y)) < 4 * stderr


@pytest.mark.parametrize('m,d,scaling', [(40, 16, 'chi'), (32, 16, 'sqrt_d'), (5, 8, 'chi')])
def test_orthogonal_blocks(m, d, scaling):
  w = np.asarray(random_projection(jax.random.key(0), m, d, scaling=scaling), np.float64)
  assert w.shape == (m, d)
  norms = np.linalg.norm(w, axis=1)
  for start in range(0, m, d):
    block = w[start:start + d] / norms[start:start + d, None]
    np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-5)
  if scaling == 'sqrt_d':
    np.testing.assert_allclose(norms, np.sqrt(d), rtol=1e-5)
  else:
    assert norms.std() > 0.1  # chi-distributed, not constant
  iid = np.asarray(random_projection(jax.random.key(0), d, d, orthogonal=False))
  assert np.abs(np.triu(iid @ iid.T, 1)).max() > 0.1


# ---------------------------------------------------------------- attention vs dense float64

@pytest.mark.parametrize('length,chunk', [(63, 16), (300, 64), (63, 100), (300, None)])
def test_linear_attention_matches_dense(length, chunk):
  """chunk None: bidirectional; else causal with a chunk size that does not divide L."""
  b, h, m, dv = 2, 2, 8, 5
  q, k = np.abs(normal(0, b, h, length, m)), np.abs(normal(1, b, h, length, m))
  v, ls, g = normal(2, b, h, length, dv), normal(3, b, h, length, scale=3.0), normal(4, b, h, length, dv)
  causal = chunk is not None
  with jax.enable_x64(True):
    if causal:
      fn = functools.partial(causal_linear_attention, chunk_size=chunk)
      attend = lambda q, k, v, ls: fn(q, k, v, k_logscale=ls)
    else:
      attend = linear_attention
    args = tuple(map(jnp.asarray, (q, k, v, ls)))
    y, vjp = jax.vjp(jax.jit(attend), *args)
    grads = vjp(jnp.asarray(g))
  y_ref = references.linear_attention(q, k, v, causal=causal, k_logscale=ls)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
  for got, want in zip(grads, references.linear_attention_vjp(q, k, v, ls, g, causal=causal)):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('kernel,causal,block_size', [  # block 20 divides neither L nor c
    *((kernel, causal, 20) for kernel in ('softmax', 'hyperbolic', 'relu')
      for causal in (False, True)),
    ('softmax', True, 1024)])
def test_favor_matches_dense(kernel, causal, block_size):
  b, length, h, d, m = 1, 63, 2, 8, 12
  q, k, v = (normal(i, b, length, h, d) for i in range(3))
  w = np.asarray(random_projection(jax.random.key(0), m, d), np.float64)
  with jax.enable_x64(True):
    y = favor_attention(*map(jnp.asarray, (q, k, v, w)), causal=causal, kernel=kernel,
                        chunk_size=8, block_size=block_size)
  q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # head-major for the reference
  y_ref = references.linear_attention(references.favor_features(kernel, q, w),
                                      references.favor_features(kernel, k, w), v, causal=causal)
  np.testing.assert_allclose(y, y_ref.transpose(0, 2, 1, 3), rtol=1e-9, atol=1e-10)


def test_error_against_softmax_falls_with_m_and_orthogonal_helps():
  """Mean squared error against exact softmax attention over 96 projection seeds.

  Orthogonal features at m = 16, 64, 256, and i.i.d. ones at m = 64 made from
  the same Gaussian rows (same key), so that comparison is paired (Theorem 2).
  """
  length, d, ms = 64, 8, (16, 64, 256)
  q, k, v = (jnp.asarray(normal(i, 1, length, 1, d, scale=s), jnp.float32)
             for i, s in enumerate((0.5, 0.5, 1.0)))

  exact = {causal: references.softmax_attention(q, k, v, causal=causal)
           for causal in (False, True)}

  def errors(key):  # [causal, (orthogonal m = 16, 64, 256, i.i.d. m = 64)]
    out = []
    for causal in (False, True):
      for m, orthogonal in [(m, True) for m in ms] + [(64, False)]:
        w = random_projection(key, m, d, orthogonal=orthogonal)
        y = favor_attention(q, k, v, w, causal=causal, chunk_size=16)
        out.append(jnp.mean((y - exact[causal]) ** 2))
    return jnp.stack(out).reshape(2, len(ms) + 1)

  # lax.map, not vmap: XLA:CPU here hung running the vmapped graph (no CPU used).
  keys = jax.random.split(jax.random.key(0), 96)
  err = np.asarray(jax.jit(lambda keys: jax.lax.map(errors, keys))(keys)).mean(0)
  assert (np.diff(err[:, :3], axis=-1) < 0).all(), err
  assert (err[:, 1] < err[:, 3]).all(), err


# ---------------------------------------------------------------- numerics

@pytest.mark.parametrize('kernel,causal', [('softmax', False), ('softmax', True),
                                           ('hyperbolic', True)])
def test_bfloat16_and_extreme_inputs(kernel, causal):
  q, k, v = (jnp.asarray(normal(i, 1, 40, 2, 16), jnp.float32) for i in range(3))
  w = random_projection(jax.random.key(0), 32, 16)
  attend = jax.jit(functools.partial(favor_attention, causal=causal, kernel=kernel, chunk_size=16))
  y16 = attend(*(a.astype(jnp.bfloat16) for a in (q, k, v)), w)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(y16.astype(jnp.float32), attend(q, k, v, w), atol=3e-2)

  big = tuple(a * 1e4 for a in (q, k, v))
  loss = lambda q, k, v: jnp.sum(attend(q, k, v, w) ** 2) * 1e-8
  y, grads = attend(*big, w), jax.grad(loss, argnums=(0, 1, 2))(*big)
  assert all(np.isfinite(a).all() for a in (y, *grads))


# ---------------------------------------------------------------- the mixer

def make(causal=True, seed=0, **opts):
  opts = {'num_features': 16, 'chunk_size': 8, 'block_size': 16, **opts}
  return build('performer', dim=32, num_heads=4, max_len=64, causal=causal,
               rngs=nnx.Rngs(seed), **opts)


@pytest.mark.parametrize('kernel', sorted(KERNELS))
def test_causal_through_registry(kernel):
  mixer = make(kernel=kernel)
  x = jnp.asarray(normal(0, 2, 50, 32), jnp.float32)
  t = 29  # mid-chunk; later positions become huge so a future-taken max would show
  x2 = x.at[:, t:].set(jnp.asarray(normal(1, 2, 50 - t, 32, scale=1e4), jnp.float32))
  y, y2 = mixer(x), mixer(x2)
  assert y.shape == x.shape and np.isfinite(y2).all()
  np.testing.assert_array_equal(y[:, :t], y2[:, :t])
  assert not np.array_equal(y[:, t:], y2[:, t:])


@pytest.mark.parametrize('kernel', ['softmax', 'hyperbolic', 'relu'])
def test_decode_equals_parallel(kernel):
  mixer = make(kernel=kernel)
  x = jnp.asarray(normal(0, 2, 21, 32), jnp.float32)
  step = nnx.jit(lambda mixer, x_t, cache: mixer.step(x_t, cache))
  cache, ys = mixer.init_cache(2, 64), []
  for t in range(x.shape[1]):
    y_t, cache = step(mixer, x[:, t:t + 1], cache)
    ys.append(y_t)
  assert cache['kv'].shape == (2, 4, mixer.num_features * (2 if kernel == 'hyperbolic' else 1), 9)
  np.testing.assert_allclose(jnp.concatenate(ys, 1), mixer(x), rtol=1e-5, atol=1e-5)


update_jit = nnx.jit(update_all_buffers)


def run_updates(mixer, steps):
  """update_buffers as the training step calls it: inside jit, key folded from the step."""
  seen = {}
  for s in steps:
    update_jit(mixer, jnp.int32(s), jax.random.fold_in(jax.random.key(7), s))
    seen[s] = np.asarray(mixer.projection[...])
  return seen


def test_redraw_every():
  mixer = make(causal=False, redraw_every=3)
  assert isinstance(mixer.projection, Buffer)
  assert 'projection' not in nnx.to_pure_dict(nnx.state(mixer, nnx.Param))
  before = np.asarray(mixer.projection[...])
  seen = run_updates(mixer, range(8))
  changed = [s for s in range(8)
             if not np.array_equal(seen[s], seen[s - 1] if s else before)]
  assert changed == [0, 3, 6]
  assert not np.array_equal(seen[0], seen[3])
  # The same step draws the same projection, whatever the history (resume).
  other = make(causal=False, seed=1, redraw_every=3)
  assert not np.array_equal(np.asarray(other.projection[...]), before)
  np.testing.assert_array_equal(run_updates(other, [6])[6], seen[6])
  resumed = make(causal=False, redraw_every=3)
  resumed.projection[...] = jnp.asarray(seen[4])
  np.testing.assert_array_equal(run_updates(resumed, [5, 6, 7])[7], seen[7])

  fixed = make(causal=False)
  w = np.asarray(fixed.projection[...])
  assert all(np.array_equal(p, w) for p in run_updates(fixed, [0, 3, 6]).values())


# ---------------------------------------------------------------- registry

def test_registry_options():
  assert set(options('performer')) == {
      'num_features', 'kernel', 'orthogonal', 'redraw_every', 'chunk_size', 'block_size'}
  mixer = make(causal=False, kernel='relu', orthogonal=False, num_features=24)
  assert mixer.projection[...].shape == (24, 8)
  assert mixer(jnp.ones((1, 10, 32))).shape == (1, 10, 32)
  with pytest.raises(ValueError, match='decoding needs causal'):
    mixer.init_cache(1, 8)


@pytest.mark.parametrize('opts,message', [
    ({'bogus': 1}, 'unknown option'), ({'kernel': 'cosine'}, 'unknown kernel'),
    ({'num_features': 0}, 'num_features'), ({'chunk_size': 0}, 'chunk_size'),
    ({'block_size': 0}, 'block_size'),
    ({'redraw_every': -1}, 'redraw_every')])
def test_registry_errors(opts, message):
  with pytest.raises(ValueError, match=message):
    make(**opts)


def test_length_and_width_errors():
  with pytest.raises(ValueError, match='max_len'):
    make()(jnp.ones((1, 65, 32)))
  with pytest.raises(ValueError, match='divisible'):
    build('performer', dim=30, num_heads=4, max_len=8, causal=True, rngs=nnx.Rngs(0))
