"""The AFT family against the dense float64 references written straight from the paper's
formulas (mixers/references.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
from aft.functions import aft_conv, aft_full, aft_local, aft_simple, conv_bias
from mixers import references

B, D, HEADS = 2, 8, 2
# Each graph here runs a few times on tiny inputs: compile fast rather than run fast.
fast_jit = functools.partial(jax.jit, compiler_options={
    'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})


# (variant, T, option): lengths 1, 63, 300; windows and kernels that divide none of them.
CASES = [(kind, T, opt) for T, opts in ((1, (3, 3)), (63, (5, 4)), (300, (13, 7)))
         for kind, opt in (('full', None), ('simple', None), ('local', opts[0]), ('conv', opts[1]))]
CASES += [('full_dense', 63, None), ('local_dense', 300, 7), ('conv2d', 63, ((7, 9), 3)),
          ('conv2d', 30, ((5, 6), 4))]


def make(kind, T, opt, causal, seed=0):
  """(fn over float32 arrays, float64 reference, arguments) for one variant."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape, scale=1.: (scale * rng.normal(size=shape)).astype(np.float32)
  q, k, v = normal(B, T, D), normal(B, T, D), normal(B, T, D)
  if kind == 'simple':
    return (lambda q, k, v: aft_simple(q, k, v, causal=causal),
            lambda q, k, v: references.aft_simple(q, k, v, causal=causal), (q, k, v))
  if kind.startswith('conv'):
    k = normal(B, T, HEADS)
    shape = opt[0] if kind == 'conv2d' else None
    s = opt[1] if shape else opt
    taps = normal(HEADS, *(s,) * (2 if shape else 1))
    return (lambda q, k, v, w: aft_conv(q, k, v, w, causal=causal, spatial_shape=shape),
            lambda q, k, v, w: references.aft_conv(q, k, v, w, causal=causal, spatial_shape=shape),
            (q, k, v, taps))
  if kind.startswith('full'):
    fn = lambda q, k, v, w: aft_full(q, k, v, w, causal=causal, block=8)
    reference = lambda q, k, v, w: references.aft_full(q, k, v, w, causal=causal)
  else:
    fn = lambda q, k, v, w: aft_local(q, k, v, w, window=opt, causal=causal)
    reference = lambda q, k, v, w: references.aft_local(q, k, v, w, window=opt, causal=causal)
  if kind.endswith('dense'):
    return fn, reference, (q, k, v, normal(T, T, scale=0.5))
  return (lambda q, k, v, u, w: fn(q, k, v, (u, w)),
          lambda q, k, v, u, w: reference(q, k, v, u.astype(float) @ w.T),
          (q, k, v, normal(T, 4, scale=0.7), normal(T, 4, scale=0.7)))


BIDIRECTIONAL = ('full_dense', 'local_dense', 'conv2d')


@functools.cache
def variant(kind, T, opt, causal):
  """make(...) plus one compiled (output, vjp) runner, shared by the tests below."""
  fn, reference, args = make(kind, T, opt, causal)
  run = fast_jit(lambda args, cotangent: (fn(*args), jax.vjp(fn, *args)[1](cotangent)))
  return fn, reference, args, run


@pytest.mark.parametrize('kind,T,opt,causal', [  # dense bias and 2-D paths: bidirectional only
    c + (causal,) for c in CASES for causal in (False, True)[:1 if c[0] in BIDIRECTIONAL else 2]])
def test_against_dense_reference(kind, T, opt, causal):
  _, reference, args, run = variant(kind, T, opt, causal)
  rng = np.random.default_rng(1)
  cotangent = rng.normal(size=(B, T, D)).astype(np.float32)
  out, grads = run(args, cotangent)
  np.testing.assert_allclose(out, reference(*args), rtol=1e-5, atol=1e-5)
  # Each gradient along a random direction against a central difference of the reference.
  loss = lambda *a: np.sum(reference(*a) * cotangent)
  wide = [a.astype(np.float64) for a in args]
  for i, grad in enumerate(grads):
    step = 1e-5 * rng.normal(size=wide[i].shape)
    hi, lo = list(wide), list(wide)
    hi[i], lo[i] = wide[i] + step, wide[i] - step
    numeric = (loss(*hi) - loss(*lo)) / 2
    assert abs(np.vdot(grad, step) - numeric) <= 1e-4 * abs(numeric) + 1e-9, (i, numeric)


# The length-63 variants, reusing their compiled runners.
SAMPLES = [c + (causal,) for c in CASES[4:8] for causal in (False, True)]


@pytest.mark.parametrize('kind,T,opt,causal', SAMPLES + [('conv2d', 63, ((7, 9), 3), False)])
def test_extreme_keys_are_exact_and_finite(kind, T, opt, causal):
  _, reference, args, run = variant(kind, T, opt, causal)
  signs = np.random.default_rng(2).choice([-1, 1], size=args[1].shape)
  args = (args[0], (1e4 * signs).astype(np.float32), *args[2:])
  out, grads = run(args, np.ones((B, T, D), np.float32))
  np.testing.assert_allclose(out, reference(*args), rtol=1e-5, atol=1e-5)
  assert all(np.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('kind,T,opt,causal', SAMPLES[1::2])  # the causal ones
def test_bfloat16_matches_float32(kind, T, opt, causal):
  fn, _, args, run = variant(kind, T, opt, causal)
  low = [jnp.asarray(a, jnp.bfloat16) for a in args]
  out = fast_jit(fn)(*low)
  assert out.dtype == jnp.bfloat16
  expected, _ = run(tuple(a.astype(jnp.float32) for a in low), np.ones((B, T, D), np.float32))
  np.testing.assert_allclose(out.astype(np.float32), expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize('causal', [False, True])
def test_window_limits(causal):
  """AFT-local with window >= T is AFT-full; window 0, and AFT-full with w = 0, are AFT-simple."""
  _, _, (q, k, v, u, w), _ = variant('local', 63, 5, causal)
  full = fast_jit(lambda q, k, v, w: aft_full(q, k, v, w, causal=causal, block=8))
  simple = variant('simple', 63, None, causal)[3]((q, k, v), q)[0]  # same seed, same arrays
  np.testing.assert_allclose(
      fast_jit(lambda *a: aft_local(*a[:3], a[3:], window=80, causal=causal))(q, k, v, u, w),
      full(q, k, v, (u, w)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      fast_jit(lambda *a: aft_local(*a[:3], a[3:], window=0, causal=causal))(q, k, v, u, w),
      simple, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(full(q, k, v, np.zeros((63, 63), np.float32)), simple,
                             rtol=1e-5, atol=1e-6)


def test_conv_reparameterisation():
  w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 5)), jnp.float32)
  np.testing.assert_array_equal(conv_bias(w, jnp.zeros(3), jnp.zeros(3)), 0.)
  out = conv_bias(w, jnp.array([1., 2., 3.]), jnp.array([0., 1., -1.]))
  np.testing.assert_allclose(out.mean(axis=(1, 2)), [0., 1., -1.], atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(1, 2)), [1., 2., 3.], rtol=1e-4)


def build(name, causal=True, max_len=48, dim=16, **options):
  return mixers.build(name, dim=dim, num_heads=4, max_len=max_len, causal=causal,
                      rngs=nnx.Rngs(0), **options)


def compiled(mixer, method='__call__'):
  """mixer.method as a pure compiled function of the arguments after the mixer."""
  graphdef, state = nnx.split(mixer)
  run = fast_jit(lambda state, *args: getattr(nnx.merge(graphdef, state), method)(*args))
  return functools.partial(run, state)


CAUSAL_MIXERS = [('aft_full', {}), ('aft_full', {'bias_dim': None}), ('aft_local', {'window': 5}),
                 ('aft_local', {'window': 0}), ('aft_simple', {}), ('aft_conv', {'window': 4})]


@pytest.mark.parametrize('name,options', CAUSAL_MIXERS)
def test_causal_and_decoding_equal_parallel(name, options):
  mixer = build(name, **options)
  if name == 'aft_conv':  # a non-trivial filter (gamma = beta = 0 at init makes w = 0)
    mixer.gamma[...] = jnp.arange(1., 5.)
    mixer.beta[...] = jnp.full(4, 0.3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 37, 16)), jnp.float32)
  call, step = compiled(mixer), compiled(mixer, 'step')
  y = call(x)
  # Causality: changing positions >= 20 leaves the outputs before them bitwise equal.
  np.testing.assert_array_equal(call(x.at[:, 20:].set(3.))[:, :20], y[:, :20])
  cache, steps = mixer.init_cache(2, 48), []
  for t in range(x.shape[1]):
    y_t, cache = step(x[:, t:t + 1], cache)
    steps.append(y_t)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), y, rtol=1e-5, atol=1e-5)


def test_registry_and_options():
  assert {'aft_full', 'aft_local', 'aft_simple', 'aft_conv'} <= set(mixers.names())
  assert mixers.options('aft_local') == ['window', 'bias_dim']
  assert mixers.options('aft_conv') == ['heads', 'window', 'spatial_shape']
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['windw'\].*window"):
    build('aft_local', windw=3)
  with pytest.raises(ValueError, match='bidirectional only'):
    build('aft_conv', spatial_shape=(4, 4))
  with pytest.raises(ValueError, match='not divisible'):
    build('aft_conv', heads=3)
  with pytest.raises(ValueError, match='exceeds max_len'):
    build('aft_local', window=3)(jnp.zeros((1, 49, 16)))
  with pytest.raises(ValueError, match='causal=True'):
    build('aft_simple', causal=False).init_cache(1, 8)
  image = build('aft_conv', causal=False, spatial_shape=(6, 8), window=3)
  assert image(jnp.ones((1, 48, 16))).shape == (1, 48, 16)
  with pytest.raises(ValueError, match='H \\* W'):
    image(jnp.ones((1, 40, 16)))


def test_short_sequences_use_the_leading_block_of_the_bias():
  mixer = build('aft_local', window=5, max_len=64)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 40, 16)), jnp.float32)
  bias = (mixer.bias_u[:40], mixer.bias_v[:40])
  q, k, v = mixer.q(x), mixer.k(x), mixer.v(x)
  expected = mixer.out(fast_jit(lambda *a: aft_local(*a, window=5, causal=True))(q, k, v, bias))
  np.testing.assert_allclose(compiled(mixer)(x), expected, rtol=1e-6)
