"""The hand-written gradient of the causal banded AFT sum (aft/banded_causal.py) against
jax.grad of a plain dense float64 AFT, with respect to q, k, v and the biases (AFT-local's
factors u, w; AFT-conv's taps), for ordinary and extreme (+-80) keys, in one group of
blocks and in several (the scan's carries across groups, padding blocks)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aft.banded_causal
from aft.functions import aft_conv, aft_local

B, T, D, HEADS, WINDOW, TAPS = 2, 37, 8, 2, 6, 4
fast_jit = functools.partial(jax.jit, compiler_options={
    'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})


def dense(q, k, v, W):
  """sigmoid(q_t) sum_s W_ts exp(k_s) v_s / sum_s W_ts exp(k_s); W [T, T] or [T, T, d]."""
  W = W if W.ndim == 3 else W[..., None]
  e = jnp.exp(k - k.max(axis=1, keepdims=True))
  return jax.nn.sigmoid(q) * (jnp.einsum('tsd,bsd->btd', W, e * v) /
                              jnp.einsum('tsd,bsd->btd', W, e))


def weights(bias, reach):
  """exp(bias) for 0 <= t - s < reach, 1 further back, 0 for the future: [T, T, ...]."""
  back = (jnp.arange(T)[:, None] - jnp.arange(T)[None])[(...,) + (None,) * (bias.ndim - 2)]
  return jnp.where(back < 0, 0., jnp.where(back < reach, jnp.exp(bias), 1.))


def local_dense(q, k, v, u, w):
  return dense(q, k, v, weights(u @ w.T, WINDOW))


def conv_dense(q, k, v, taps):
  back = jnp.clip(jnp.arange(T)[:, None] - jnp.arange(T)[None], 0, TAPS - 1)
  bias = jnp.repeat(taps[:, TAPS - 1 - back], D // HEADS, axis=0)  # [d, T, T]
  return dense(q, jnp.repeat(k, D // HEADS, axis=-1), v, weights(jnp.moveaxis(bias, 0, -1), TAPS))


CASES = {'local': (lambda q, k, v, u, w: aft_local(q, k, v, (u, w), window=WINDOW, causal=True),
                   local_dense, (D, 3, 3)),
         'conv': (lambda q, k, v, taps: aft_conv(q, k, v, taps, causal=True), conv_dense,
                  (HEADS, (HEADS, TAPS)))}


@pytest.mark.parametrize('kind', list(CASES))
@pytest.mark.parametrize('keys,group', [('normal', aft.banded_causal.GROUP),  # one group
                                        ('extreme', 16)])  # 2-block groups and a padding one
def test_gradient_against_dense_float64(kind, keys, group, monkeypatch):
  monkeypatch.setattr(aft.banded_causal, 'GROUP', group)
  fn, reference, shapes = CASES[kind]
  rng = np.random.default_rng(0)
  k_dim, *bias_shapes = shapes
  q, v = rng.normal(size=(B, T, D)), rng.normal(size=(B, T, D))
  k = (80. * rng.choice([-1., 1.], size=(B, T, k_dim)) if keys == 'extreme'
       else rng.normal(size=(B, T, k_dim)))
  if kind == 'local':
    bias = [0.5 * rng.normal(size=(T, 3)) for _ in range(2)]
  else:
    bias = [rng.normal(size=bias_shapes[0])]
  args = [q, k, v, *bias]
  cotangent = rng.normal(size=(B, T, D))
  loss = lambda f: lambda *a: jnp.sum(f(*a) * cotangent.astype(a[0].dtype))
  out, grads = fast_jit(lambda a: (fn(*a), jax.grad(loss(fn), argnums=range(len(a)))(*a)))(
      [np.float32(a) for a in args])
  with jax.enable_x64(True):
    want_out, wants = fast_jit(lambda a: (reference(*a), jax.grad(
        loss(reference), argnums=range(len(a)))(*a)))(list(map(jnp.asarray, args)))
  np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
  for name, got, want in zip(['q', 'k', 'v', 'bias', 'bias2'], grads, wants):
    assert np.isfinite(got).all(), name
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)
