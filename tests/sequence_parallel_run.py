"""Run by test_sequence_parallel.py in a fresh process with 8 fake CPU devices: every mixer
with a sequence-parallel path against its single-device computation, the refusals, and the
byte LM trained with mesh.sequence=4 x data=2."""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType

import mixers
import train
from tests.helpers import read_metrics, tiny_config

B, T, D = 2, 37, 16  # 37 positions: 5 per device on 8 (3 of padding), 10 on 4
CASES = [('performer', dict(num_features=8, chunk_size=3, block_size=4)),
         ('linear', dict(chunk_size=3, block_size=4)),
         ('aft_simple', {}), ('aft_local', dict(window=4, bias_dim=8)),
         ('aft_conv', dict(window=3, heads=4)), ('softmax', dict(chunk_size=3)),
         ('local', dict(block=2, neighbours=1)),
         ('longformer', dict(window=2, dilation=(1, 2, 1, 2), block=4))]


def mesh(data, sequence):
  return jax.make_mesh((data, 1, sequence, 1), ('data', 'fsdp', 'sequence', 'tensor'),
                       axis_types=(AxisType.Auto,) * 4)


def mixer_cases():
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  later = x.at[:, 20:].set(7.0)  # changes positions >= 20 only
  out = []
  for name, opts in CASES:
    for causal in (True, False)[:1 if name == 'longformer' else 2]:
      m = mixers.build(name, dim=D, num_heads=4, max_len=40, causal=causal, rngs=nnx.Rngs(0),
                       **opts)
      graphdef, params = nnx.split(m)

      def f(params, x):
        y = nnx.merge(graphdef, params)(x)
        return jnp.sum(jnp.sin(y)), y
      grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
      (_, ref), ref_grads = grad(params, x)
      # 4 sequence x 2 data devices for two mixers (the same code path for the others).
      meshes = [(1, 8)] + [(2, 4)] * (causal and name in ('performer', 'softmax'))
      for data, seq in meshes:
        with jax.set_mesh(mesh(data, seq)):
          (_, y), grads = grad(params, x)
          jaxpr = str(jax.make_jaxpr(f)(params, x))
          y_later = grad(params, later)[0][1]
        diffs, scale = zip(*[(float(jnp.max(jnp.abs(a - b))), float(jnp.max(jnp.abs(b))))
                             for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads))])
        out.append(dict(
            name=name, causal=causal, data=data, sequence=seq,
            out_err=float(jnp.max(jnp.abs(y - ref)) / jnp.max(jnp.abs(ref))),
            grad_err=max(diffs) / max(scale),  # relative to the largest gradient entry
            sharded='shard_map' in jaxpr,
            causal_exact=bool(jnp.array_equal(y_later[:, :20], y[:, :20])) if causal else True))
  return out


def refusal(name, opts, length=T, sequence=8):
  m = mixers.build(name, dim=D, num_heads=4, max_len=64, causal=False, rngs=nnx.Rngs(0),
                   **opts)
  try:
    with jax.set_mesh(mesh(1, sequence)):
      m(jnp.ones((B, length, D)))
  except ValueError as e:
    return str(e)
  return None


def main(zip_path, workdir):
  assert jax.device_count() == 8, jax.devices()
  out = {'mixers': mixer_cases(),
         'no_path': refusal('linformer', {}),
         'no_reach': refusal('strided', dict(stride=8, block=4)),
         'too_wide': refusal('aft_local', dict(window=9), length=32)}
  # The reference run's training; its evaluations and checkpoints do not change the losses.
  config = tiny_config(zip_path, mesh=dict(data=2, fsdp=1, sequence=4, tensor=1),
                       checkpoint_every=12)
  config.evals = {}
  train.train_and_evaluate(config, f'{workdir}/lm')
  out['lm'] = [r['loss'] for r in read_metrics(f'{workdir}/lm')]
  print('RESULT ' + json.dumps(out))


if __name__ == '__main__':
  main(*sys.argv[1:])
