"""JAX measurements: a registered mixer or jax.nn.dot_product_attention, forward and
forward+backward, jit-compiled, with XLA's compiled memory analysis."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from flax import nnx

import mixers
from bench.measure import NotApplicable, time_phases
from bench.scan_peer import favor_scan
from mixers.layers import linear, sharding_scope
from performer.features import feature_map

# Peer name -> jax.nn.dot_product_attention implementation. cuDNN needs a GPU and
# half precision, so that peer runs in bfloat16 (the dtype is recorded per row).
PEERS = {'jax_dpa_xla': 'xla', 'jax_dpa_cudnn': 'cudnn'}
SCAN_PEER = 'jax_favor_scan'  # causal FAVOR+ as one lax.scan step per position


class DotProductAttention(nnx.Module):
  """jax.nn.dot_product_attention behind the same q, k, v, out projections as our mixers."""

  def __init__(self, *, dim: int, num_heads: int, causal: bool, implementation: str,
               rngs: nnx.Rngs):
    self.num_heads, self.causal, self.implementation = num_heads, causal, implementation
    self.q, self.k, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs)
                              for _ in range(3))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)

  def __call__(self, x):
    q, k, v = (f(x).reshape(*x.shape[:2], self.num_heads, -1) for f in (self.q, self.k, self.v))
    y = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal,
                                     implementation=self.implementation)
    return self.out(y.reshape(x.shape))


class FavorScan(nnx.Module):
  """Our registered performer (same parameters, projection and features) with its causal
  engine swapped for the sequential scan."""

  def __init__(self, *, dim: int, num_heads: int, length: int, rngs: nnx.Rngs):
    self.performer = mixers.build('performer', dim=dim, num_heads=num_heads, max_len=length,
                                  causal=True, rngs=rngs)

  def __call__(self, x):
    p = self.performer
    q, k, v = (f(x).reshape(*x.shape[:2], p.num_heads, -1) for f in (p.q, p.k, p.v))
    features = feature_map(p.projection[...], p.kernel)
    (q_feat, _), (k_feat, k_logscale) = features(q), features(k)
    return p.out(favor_scan(q_feat, k_feat, v, k_logscale).reshape(x.shape))


def dtype_of(spec: dict):
  if 'dtype' in spec:
    return jnp.dtype(spec['dtype'])
  return jnp.bfloat16 if spec['impl'] == 'jax_dpa_cudnn' else jnp.float32


def build(impl: str, *, dim: int, num_heads: int, length: int, causal: bool,
          options: dict) -> nnx.Module:
  with sharding_scope():  # the peers' own projections: unsharded outside a mesh
    if impl == SCAN_PEER:
      if not causal:
        raise NotApplicable(f'{impl} is the causal engine only')
      return FavorScan(dim=dim, num_heads=num_heads, length=length, rngs=nnx.Rngs(0))
    if impl in PEERS:
      return DotProductAttention(dim=dim, num_heads=num_heads, causal=causal,
                                 implementation=PEERS[impl], rngs=nnx.Rngs(0))
    make = lambda c: mixers.build(impl, dim=dim, num_heads=num_heads, max_len=length, causal=c,
                                  rngs=nnx.Rngs(0), **options)
    try:
      return make(causal)
    except ValueError:
      if causal:
        make(False)  # builds bidirectionally: the mixer simply has no causal form
        raise NotApplicable(f'{impl} is bidirectional only')
      raise


def device_peak_bytes() -> int | None:
  """Peak bytes in use on the device over the process's life (None on CPU)."""
  stats = jax.local_devices()[0].memory_stats()
  return stats.get('peak_bytes_in_use') if stats else None


def start_runtime() -> None:
  """Runs a small matmul and its gradient, so the runtime's one-time start-up memory (thread
  stacks, pools) is resident before the first phase and not counted in its peak."""
  a = jnp.ones((256, 256))
  jax.block_until_ready(jax.jit(jax.value_and_grad(lambda a: jnp.sum(jnp.tanh(a @ a))))(a))


def measure(spec: dict, record) -> None:
  """Fills the row through `record(**fields)` phase by phase, so a crash keeps what was done.

  spec: impl, mode, length, batch, heads, head_dim, repeats; optional: options (the
  mixer's), dtype (default float32), phases (default fwd and fwdbwd).
  """
  dim = spec['heads'] * spec['head_dim']
  model = build(spec['impl'], dim=dim, num_heads=spec['heads'], length=spec['length'],
                causal=spec['mode'] == 'causal', options=spec.get('options', {}))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: Buffers, held fixed
  dtype = dtype_of(spec)
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  record(dtype=jnp.dtype(dtype).name)
  x = jax.block_until_ready(jax.random.normal(jax.random.key(1), (spec['batch'], spec['length'],
                                                                   dim), dtype))

  def forward(params, rest, x):
    return nnx.merge(graphdef, params, rest)(x)

  def loss(params, rest, x):
    return jnp.sum(forward(params, rest, x).astype(jnp.float32))

  start_runtime()
  functions = {'fwd': forward, 'fwdbwd': jax.grad(loss, argnums=(0, 2))}
  phases = {}
  for phase in spec.get('phases', ('fwd', 'fwdbwd')):
    compiled, fields = compile_phase(functions[phase], params, rest, x)
    phases[phase] = (lambda c=compiled: jax.block_until_ready(c(params, rest, x)),
                     lambda f=fields: {**f, 'device_peak_bytes': device_peak_bytes()})
  time_phases(phases, spec['repeats'], record)


def compile_phase(function, *args):
  """(the compiled function, its compile seconds and XLA's memory analysis as fields)."""
  t = time.perf_counter()
  compiled = jax.jit(function).lower(*args).compile()
  compile_s = time.perf_counter() - t
  mem = compiled.memory_analysis()
  return compiled, {
      'compile_s': compile_s,
      'xla_bytes': (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                    + mem.output_size_in_bytes) if mem else None,
      'xla_temp_bytes': mem.temp_size_in_bytes if mem else None}
