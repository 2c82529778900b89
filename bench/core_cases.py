"""JAX attention cores alone: q, k, v -> output, and the gradient with respect to q, k and v
for a random output cotangent g made beforehand (as the layer above hands one down; the
gradient of sum(output) would charge the core for a materialised array of ones); no
projections. Ours are the functions the mixers call; the JAX peer is the
sequential-scan FAVOR+ (bench/scan_peer.py)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aft.functions import aft_conv, aft_local, aft_simple
from bench.jax_cases import compile_phase, device_peak_bytes, start_runtime
from bench.measure import NotApplicable, time_phases
from bench.scan_peer import favor_scan
from mixers.chunked_softmax import chunked_softmax_attention
from mixers.kernel_attention import attention_by_heads
from mixers.linear_attention import FEATURES as LINEAR_FEATURES
from performer.attention import favor_attention
from performer.features import feature_map, random_projection

FEATURES = 256  # m of the performer mixer's default
AFT_LOCAL_WINDOW, AFT_LOCAL_BIAS_DIM = 32, 64
AFT_CONV_WINDOW = 11
CAUSAL_ONLY = ('jax_favor_scan',)


def core(impl: str, *, length: int, heads: int, head_dim: int, causal: bool):
  """(function of (q, k, v), input shapes by name). q, k, v are [B, L, H, D] unless the
  core takes [B, L, H D] (the AFT family; AFT-conv's k is [B, L, H])."""
  if impl in CAUSAL_ONLY and not causal:
    raise NotApplicable(f'{impl} is the causal engine only')
  heads_major = {'q': (length, heads, head_dim), 'k': (length, heads, head_dim),
                 'v': (length, heads, head_dim)}
  flat = {name: (length, heads * head_dim) for name in 'qkv'}
  if impl == 'softmax':
    return (lambda q, k, v: chunked_softmax_attention(q, k, v, causal=causal)), heads_major
  if impl in ('favor', 'jax_favor_scan'):
    w = random_projection(jax.random.key(7), FEATURES, head_dim)
    if impl == 'favor':
      return (lambda q, k, v: favor_attention(q, k, v, w, causal=causal)), heads_major
    features = feature_map(w)

    def scan(q, k, v):
      (q_feat, _), (k_feat, k_logscale) = features(q), features(k)
      return favor_scan(q_feat, k_feat, v, k_logscale)
    return scan, heads_major
  if impl == 'linear':  # the linear mixer's default feature map, elu + 1
    phi = lambda x: (LINEAR_FEATURES['elu'](x), None)
    return (lambda q, k, v: attention_by_heads(q, k, v, lambda: phi, causal=causal)), heads_major
  if impl == 'aft_simple':
    return (lambda q, k, v: aft_simple(q, k, v, causal=causal)), flat
  if impl == 'aft_local':
    u, w = (0.1 * jax.random.normal(jax.random.key(i), (length, AFT_LOCAL_BIAS_DIM))
            for i in (3, 4))
    return (lambda q, k, v: aft_local(q, k, v, (u, w), window=AFT_LOCAL_WINDOW,
                                      causal=causal)), flat
  if impl == 'aft_conv':
    taps = 0.1 * jax.random.normal(jax.random.key(5), (heads, AFT_CONV_WINDOW))
    return (lambda q, k, v: aft_conv(q, k, v, taps, causal=causal)), {**flat, 'k': (length, heads)}
  raise ValueError(f'unknown JAX core {impl!r}')


def measure(spec: dict, record) -> None:
  """Fills the row phase by phase (fwd, fwdbwd) through record(**fields)."""
  fn, shapes = core(spec['impl'], length=spec['length'], heads=spec['heads'],
                    head_dim=spec['head_dim'], causal=spec['mode'] == 'causal')
  keys = jax.random.split(jax.random.key(1), 4)
  q, k, v = (jax.random.normal(key, (spec['batch'], *shapes[name]), jnp.float32)
             for key, name in zip(keys, 'qkv'))
  out = jax.eval_shape(fn, q, k, v)
  # All resident before any phase's memory is taken.
  q, k, v, g = jax.block_until_ready((q, k, v, jax.random.normal(keys[3], out.shape, out.dtype)))
  record(dtype='float32')
  # fwd+bwd first: its memory is then measured before any other phase's freed buffers sit
  # in the allocator's heap (the resident set does not rise for reused ones).
  functions = {'fwdbwd': (lambda q, k, v, g: jax.vjp(fn, q, k, v)[1](g), (q, k, v, g)),
               'fwd': (fn, (q, k, v))}
  start_runtime()
  phases = {}
  for phase, (f, args) in functions.items():
    compiled, fields = compile_phase(f, *args)
    phases[phase] = (lambda c=compiled, a=args: jax.block_until_ready(c(*a)),
                     lambda f=fields: {**f, 'device_peak_bytes': device_peak_bytes()})
  time_phases(phases, spec['repeats'], record)
