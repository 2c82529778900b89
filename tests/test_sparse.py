"""Sparse-pattern mixers: the block-sparse engine against dense float64 softmax
(mixers/references.py) with each pattern written out as an explicit [T, T] mask; the masks;
causality; decoding; registry."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixers import references
from mixers import sparse_patterns as sp
from mixers.block_sparse import block_sparse_attention, dense_mask
from mixers.registry import build, names, options

H, DH = 4, 8
# Blocks that divide neither 63 nor 300; strides, windows and global counts that are not
# multiples of the block.
CASES = {
    'local': ('local', dict(block=8, neighbours=2)),
    'strided': ('strided', dict(block=8, stride=10)),
    'fixed': ('strided', dict(block=8, stride=12, variant='fixed', summary=3)),
    'global': ('global', dict(block=16, num_global=5)),
    'longformer': ('longformer', dict(block=16, window=7, dilation=(1, 2, 3, 1), num_global=3)),
    'bigbird': ('bigbird', dict(block=8, global_blocks=1, random_blocks=2, seed=3)),
}
DECODING = ['local', 'strided', 'fixed', 'global', 'longformer']
PATTERN_CLASS = {'local': sp.Local, 'strided': sp.Strided, 'global': sp.Global,
                 'longformer': sp.Longformer, 'bigbird': sp.BigBird}


def pattern(case, causal):
  name, opts = CASES[case]
  return PATTERN_CLASS[name](num_heads=H, causal=causal, **opts)


# ------------------------------------------------ the patterns' definitions, as [H, T, T] masks

def reference_mask(case, causal, t):
  """Each pattern from its paper's definition, with no blocks, tables or orderings."""
  name, o = CASES[case]
  q, k = np.arange(t)[:, None], np.arange(t)[None, :]
  heads = [None] * H
  if name == 'local':  # own block and `neighbours` blocks around (causal: before) it
    blocks_apart = q // o['block'] - k // o['block']
    near = (0 <= blocks_apart) if causal else (-o['neighbours'] <= blocks_apart)
    heads = [near & (blocks_apart <= o['neighbours'])] * H
  elif name == 'strided':
    l = o['stride']
    if o.get('variant') == 'fixed':  # A1: same chunk of l; A2: last c of every chunk (+ self)
      local, strided = q // l == k // l, (k % l >= l - o['summary']) | (q == k)
    else:  # A1: the last l positions; A2: every l-th position
      local, strided = np.abs(q - k) <= l, (q - k) % l == 0
    heads = [local] * (H // 2) + [strided] * (H - H // 2)
  elif name == 'global':
    heads = [(q < o['num_global']) | (k < o['num_global']) | (q == k)] * H
  elif name == 'longformer':
    for h, d in enumerate(o['dilation']):
      window = np.zeros((t, t), bool)
      for j in range(-o['window'], o['window'] + 1):  # keys q + j d
        window |= k == q + j * d
      heads[h] = window | (q < o['num_global']) | (k < o['num_global'])
  elif name == 'bigbird':
    b, g = o['block'], o['global_blocks']
    qb, kb = q // b, k // b
    window = (0 <= qb - kb) & (qb - kb <= 2) if causal else np.abs(qb - kb) <= 1
    rand = pattern(case, causal).draw_random(-(-t // b))
    for h in range(H):
      chosen = (rand[h][qb] == kb[..., None]).any(-1)  # [T, T]: k's block drawn for q's block
      heads[h] = window | (qb < g) | (kb < g) | chosen
  mask = np.stack(heads)
  return mask & (k <= q) if causal else mask


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('case', CASES)
def test_layout_mask_is_the_patterns_definition(case, causal):
  for t in (63, 300):
    mask = dense_mask(pattern(case, causal).layout(t))
    np.testing.assert_array_equal(mask, reference_mask(case, causal, t))
    assert all(m.diagonal().all() for m in mask), 'every query sees itself'
    if causal:
      assert not np.triu(mask, 1).any(), 'a causal pattern sees the future'


def test_bigbird_random_blocks_come_from_the_seed():
  draw = lambda causal, seed, nq: sp.BigBird(H, causal, 8, 2, 3, seed).draw_random(nq)
  for causal in (False, True):
    np.testing.assert_array_equal(draw(causal, 5, 40), draw(causal, 5, 40))
    assert (draw(causal, 5, 40) != draw(causal, 6, 40)).any()
  causal = draw(True, 5, 40)
  np.testing.assert_array_equal(causal[:, :30], draw(True, 5, 30))  # independent of the length
  i = np.arange(40)[None, :, None]
  drawn = causal >= 0
  assert (causal[drawn] >= 2).all() and (causal < i - 2)[drawn].all()  # past, not window/global
  assert drawn[:, 8:].all()  # r blocks wherever 3 are left to draw from
  bidir = draw(False, 5, 40)
  assert (bidir[:, 2:] >= 2).all() and (np.abs(bidir[:, 2:] - i[:, 2:]) > 1).all()
  for row in bidir[:, 2:].reshape(-1, 3):
    assert len(set(row)) == 3


# ------------------------------------------------ the engine against dense float64 softmax

def normal(seed, t, scale=1.0, dtype=jnp.float32):
  return scale * jax.random.normal(jax.random.key(seed), (1, t, H, DH)).astype(dtype)


def engine_with_grads(layout, q, k, v, dout):
  f = lambda q, k, v: block_sparse_attention(q, k, v, layout)
  out, vjp = jax.vjp(f, q, k, v)
  return out, vjp(dout)


def compiled(f, *args):
  """jit for correctness checks: without LLVM's expensive passes it compiles ~2x faster."""
  return jax.jit(f).lower(*args).compile(
      {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})


@pytest.mark.parametrize('t', [63, 300])
@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('case', CASES)
def test_engine_matches_dense_reference(case, causal, t):
  q, k, v, dout = (normal(i, t) for i in range(4))
  layout = pattern(case, causal).layout(t)
  out, grads = compiled(functools.partial(engine_with_grads, layout), q, k, v, dout)(q, k, v, dout)
  mask = reference_mask(case, causal, t)
  ref_out = references.softmax_attention(q, k, v, weights=mask)
  ref_grads = references.softmax_attention_vjp(q, k, v, dout, weights=mask)
  np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-4)
  for g, ref in zip(grads, ref_grads):
    np.testing.assert_allclose(g, ref, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize('case', ['longformer', 'bigbird'])
def test_extreme_and_bfloat16_inputs(case):
  t = 63
  layout = pattern(case, True).layout(t)
  run = lambda *a: compiled(functools.partial(block_sparse_attention, layout=layout), *a)(*a)
  assert np.isfinite(run(*(normal(i, t, scale=1e4) for i in range(3)))).all()
  out = run(*(normal(i, t, dtype=jnp.bfloat16) for i in range(3)))
  assert out.dtype == jnp.bfloat16
  q, k, v = (normal(i, t) for i in range(3))
  ref = references.softmax_attention(q, k, v, weights=reference_mask(case, True, t))
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2)


def _shapes(jaxpr):
  """Every intermediate's shape in a jaxpr, inside scans and custom VJPs too."""
  for eqn in jaxpr.eqns:
    yield from (v.aval.shape for v in eqn.outvars)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else [param]:
        sub = getattr(sub, 'jaxpr', sub)
        if hasattr(sub, 'eqns'):
          yield from _shapes(sub)


@pytest.mark.parametrize('case', ['local', 'longformer', 'bigbird'])
def test_no_dense_score_matrix(case):
  """Nothing in the forward or backward program has two axes as long as the sequence."""
  t, b = 1024, CASES[case][1]['block']
  jaxpr = jax.make_jaxpr(functools.partial(engine_with_grads, pattern(case, True).layout(t)))(
      *(jax.ShapeDtypeStruct((1, t, H, DH), jnp.float32) for _ in range(4)))
  shapes = list(_shapes(jaxpr.jaxpr))
  assert (1, H, t // b, b, b) in shapes  # one table column's scores
  assert max(sum(n >= t for n in s) for s in shapes) == 1


# ------------------------------------------------ the mixers: causality, decoding, registry

def mixer(case, causal=True, max_len=64):
  name, opts = CASES[case]
  return build(name, dim=H * DH, num_heads=H, max_len=max_len, causal=causal,
               rngs=nnx.Rngs(0), **opts)


@pytest.mark.parametrize('case', CASES)
def test_causality_is_bitwise(case):
  m = mixer(case)
  x = jax.random.normal(jax.random.key(0), (2, 63, H * DH))
  run = compiled(lambda x: m(x), x)
  x2 = x.at[:, 40:].set(100 * jax.random.normal(jax.random.key(1), (2, 23, H * DH)))
  y, y2 = run(x), run(x2)
  np.testing.assert_array_equal(y[:, :40], y2[:, :40])
  assert not np.allclose(y[:, 40:], y2[:, 40:])


@pytest.mark.parametrize('case', DECODING)
def test_decode_equals_parallel(case):
  t = 45
  m = mixer(case, max_len=t)
  x = jax.random.normal(jax.random.key(0), (2, t, H * DH))
  cache = m.init_cache(2, t)
  step = compiled(m.step, x[:, :1], cache)
  ys = []
  for i in range(t):
    y, cache = step(x[:, i:i + 1], cache)
    ys.append(y)
  np.testing.assert_allclose(jnp.concatenate(ys, 1), compiled(m, x)(x), atol=2e-5, rtol=1e-4)


def test_decode_cache_is_bounded_by_the_pattern():
  assert mixer('local', max_len=64).init_cache(1, 64)['k'].shape[1] == 3 * 8
  assert mixer('longformer', max_len=64).init_cache(1, 64)['k'].shape[1] == 3 + 7 * 3 + 1
  assert mixer('global', max_len=64).init_cache(1, 64)['k'].shape[1] == 5 + 1


def test_registry_builds_every_pattern_with_its_options():
  for name in ('local', 'strided', 'global', 'longformer', 'bigbird'):
    assert name in names()
  assert options('strided') == ['stride', 'variant', 'summary', 'block']
  assert options('bigbird') == ['block', 'global_blocks', 'random_blocks', 'seed']
  m = mixer('bigbird', causal=False)
  x = jnp.ones((1, 20, H * DH))
  assert compiled(m, x)(x).shape == (1, 20, H * DH)


@pytest.mark.parametrize('name, opts, error', [
    ('local', dict(block=0), 'block must be >= 1'),
    ('local', dict(neighbours=-1), 'neighbours must be >= 0'),
    ('strided', dict(variant='dense'), "variant must be 'strided' or 'fixed'"),
    ('strided', dict(summary=9, stride=8), 'summary must be in'),
    ('global', dict(num_global=0), 'num_global must be >= 1'),
    ('longformer', dict(dilation=(1, 2)), 'dilation must be'),
    ('bigbird', dict(random_blocks=-1), 'random_blocks must be >= 0'),
    ('bigbird', dict(window=3), r"unknown option\(s\) \['window'\]"),
])
def test_option_errors(name, opts, error):
  with pytest.raises(ValueError, match=error):
    build(name, dim=H * DH, num_heads=H, max_len=64, causal=True, rngs=nnx.Rngs(0), **opts)


def test_usage_errors():
  with pytest.raises(ValueError, match='num_heads >= 2'):
    build('strided', dim=8, num_heads=1, max_len=8, causal=True, rngs=nnx.Rngs(0))
  with pytest.raises(NotImplementedError, match='bigbird has no decoding step'):
    mixer('bigbird').init_cache(1, 64)
  with pytest.raises(ValueError, match='decoding needs causal=True'):
    mixer('local', causal=False).init_cache(1, 64)
  with pytest.raises(ValueError, match='exceeds max_len=64'):
    mixer('local')(jnp.zeros((1, 65, H * DH)))
