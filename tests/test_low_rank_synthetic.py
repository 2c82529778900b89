"""Linformer, linear attention, Synthesizer and MLP-Mixer token mixing against float64
references written from the formulas (attention itself from mixers/references.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
from mixers import references

D, H, MAX = 16, 2, 320


def build(name, causal, **opts):
  return mixers.build(name, dim=D, num_heads=H, max_len=MAX, causal=causal,
                      rngs=nnx.Rngs(0), **opts)


def params(m):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), nnx.to_pure_dict(nnx.state(m, nnx.Param)))


def dense(p, x):
  return x @ p['kernel'] + (p['bias'] if 'bias' in p else 0.0)


def heads(a):
  return a.reshape(*a.shape[:2], H, -1)


def ref_linformer(p, x, reduction, share_kv):
  t = x.shape[1]
  q, k, v = (heads(dense(p[n], x)) for n in 'qkv')
  if reduction == 'linear':
    e = p['e'][:, :t]
    f = e if share_kv else p['f'][:, :t]
    k, v = np.einsum('kt,bthd->bkhd', e, k), np.einsum('kt,bthd->bkhd', f, v)
  else:
    r = p['compress']['kernel'].shape[0] // D
    def comp(a):
      a = a.reshape(a.shape[0], t, D)
      a = np.concatenate([a, np.zeros((a.shape[0], -t % r, D))], 1)
      return heads(a.reshape(a.shape[0], -1, r * D) @ p['compress']['kernel'])
    k, v = comp(k), comp(v)
  y = references.softmax_attention(q, k, v)
  return dense(p['out'], y.reshape(x.shape))


def ref_synthesizer(p, x, causal, mode):
  t = x.shape[1]
  v = heads(dense(p['v'], x))
  if mode == 'dense':
    b = dense(p['w2'], np.maximum(dense(p['w1'], x), 0.0))
    logits = b.reshape(*b.shape[:2], H, MAX)[..., :t].transpose(0, 2, 1, 3)
  elif 'r2' in p:
    logits = np.einsum('hqf,hkf->hqk', p['r1'][:, :t], p['r2'][:, :t])[None]
  else:
    logits = p['r1'][None, :, :t, :t]
  probs = references.softmax(logits, references.causal_mask(t) if causal else 1.0)
  y = np.einsum('bhqk,bkhd->bqhd', np.broadcast_to(probs, (x.shape[0], H, t, t)), v)
  return dense(p['out'], y.reshape(x.shape))


def ref_linear(p, x, causal):
  """phi(q_t) sum_{s (<= t)} phi(k_s) v_s^T / phi(q_t) sum phi(k_s), phi = elu + 1, per head."""
  phi = lambda a: np.where(a > 0, a + 1.0, np.exp(a))
  q, k, v = (heads(dense(p[n], x)).transpose(0, 2, 1, 3) for n in 'qkv')  # head-major
  y = references.linear_attention(phi(q), phi(k), v, causal=causal)
  return dense(p['out'], y.transpose(0, 2, 1, 3).reshape(x.shape))


def gelu(z):  # jax.nn.gelu's default tanh approximation
  return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))


def ref_mlp_mixer(p, x, causal):
  t = x.shape[1]
  w1, b1, w2, b2 = p['w1'][:, :t], p['b1'], p['w2'][:t], p['b2'][:t]
  if causal:
    w1, b1, w2 = np.tril(w1[:t]), b1[:t], np.tril(w2[:, :t])
  h = gelu(np.einsum('ht,btd->bhd', w1, x) + b1[:, None])
  return np.einsum('th,bhd->btd', w2, h) + b2[:, None]


CASES = [  # (name, causal, options, reference)
    ('linformer', False, dict(k=16), lambda p, x: ref_linformer(p, x, 'linear', False)),
    ('linformer', False, dict(k=16, share_kv=True), lambda p, x: ref_linformer(p, x, 'linear', True)),
    ('linformer', False, dict(k=16, reduction='conv'), lambda p, x: ref_linformer(p, x, 'conv', 0)),
] + [
    ('linear', c, dict(chunk_size=16, block_size=40), lambda p, x, c=c: ref_linear(p, x, c))
    for c in (False, True)
] + [
    ('synthesizer', c, dict(mode=mode, factor=f),
     lambda p, x, c=c, mode=mode: ref_synthesizer(p, x, c, mode))
    for c in (False, True) for mode, f in (('dense', 0), ('random', 0), ('random', 8))
] + [
    ('mlp_mixer', c, {}, lambda p, x, c=c: ref_mlp_mixer(p, x, c)) for c in (False, True)
] + [('mlp_mixer', False, dict(hidden=48), lambda p, x: ref_mlp_mixer(p, x, False))]
IDS = [f'{n}-{"causal" if c else "bidir"}-{o}' for n, c, o, _ in CASES]


@pytest.mark.parametrize('t', [63, 300])
@pytest.mark.parametrize('name,causal,opts,ref', CASES, ids=IDS)
def test_forward_and_gradient_match_reference(name, causal, opts, ref, t):
  m = build(name, causal, **opts)
  x = jax.random.normal(jax.random.key(1), (2, t, D))
  p = params(m)
  np.testing.assert_allclose(m(x), ref(p, np.asarray(x, np.float64)), atol=2e-4, rtol=2e-3)
  # gradient: the directional derivative of sum(y * w) against central differences in float64
  w = np.random.default_rng(0).normal(size=x.shape)
  g = jax.grad(lambda x: jnp.sum(m(x) * w))(x)
  d = np.random.default_rng(1).normal(size=x.shape)
  f = lambda x: np.sum(ref(p, x) * w)
  x64, eps = np.asarray(x, np.float64), 1e-5
  numeric = (f(x64 + eps * d) - f(x64 - eps * d)) / (2 * eps)
  np.testing.assert_allclose(np.sum(np.asarray(g, np.float64) * d), numeric, rtol=2e-3, atol=1e-2)


CAUSAL = [(n, o) for n, c, o, _ in CASES if c]


@pytest.mark.parametrize('name,opts', CAUSAL, ids=[f'{n}-{o}' for n, o in CAUSAL])
def test_causality_is_bitwise(name, opts):
  m = build(name, True, **opts)
  x = jax.random.normal(jax.random.key(0), (2, 50, D))
  x2 = x.at[:, 30:].set(100.0)
  np.testing.assert_array_equal(m(x)[:, :30], m(x2)[:, :30])


@pytest.mark.parametrize('opts', [dict(mode='dense'), dict(mode='random'),
                                  dict(mode='random', factor=4)])
def test_synthesizer_decode_equals_parallel(opts):
  m = build('synthesizer', True, **opts)
  x = jax.random.normal(jax.random.key(0), (2, 20, D))
  cache, ys = m.init_cache(2, 20), []
  for t in range(20):
    y, cache = m.step(x[:, t:t + 1], cache)
    ys.append(y)
  np.testing.assert_allclose(jnp.concatenate(ys, 1), m(x), atol=1e-5)


@pytest.mark.parametrize('name,causal,opts,ref', CASES, ids=IDS)
def test_extreme_and_bfloat16_inputs_finite(name, causal, opts, ref):
  m = build(name, causal, **opts)
  x = jax.random.normal(jax.random.key(0), (1, 40, D))
  assert np.isfinite(m(x * 1e4)).all()
  np.testing.assert_allclose(np.asarray(m(x.astype(jnp.bfloat16)), np.float32), m(x),
                             atol=0.1, rtol=0.1)


def test_linear_attention_decodes_with_constant_state():
  m = build('linear', True, chunk_size=16)
  x = jax.random.normal(jax.random.key(0), (2, 37, D))
  cache = m.init_cache(2, 37)
  sizes = {a.size for a in jax.tree.leaves(cache)}
  ys = []
  for t in range(37):
    y, cache = m.step(x[:, t:t + 1], cache)
    ys.append(y)
    assert {a.size for a in jax.tree.leaves(cache)} == sizes  # O(1): independent of t
  np.testing.assert_allclose(jnp.concatenate(ys, 1), m(x), atol=1e-5)


def test_build_errors_name_the_reason():
  with pytest.raises(ValueError, match='linformer has no causal form'):
    build('linformer', True)
  with pytest.raises(ValueError, match="reduction must be 'linear' or 'conv'"):
    build('linformer', False, reduction='pool')
  with pytest.raises(ValueError, match='causal form needs hidden == max_len'):
    build('mlp_mixer', True, hidden=8)
  with pytest.raises(ValueError, match="mode must be 'dense' or 'random'"):
    build('synthesizer', False, mode='mixed')
