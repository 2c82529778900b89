"""Sequence parallelism: per-device memory, step time and collective bytes against length.

  python -m bench.sequence_parallel [--mixers=performer,softmax] [--lengths=1024,4096]
      [--shards=1,2,4,8] [--dim=64] [--heads=4] [--batch=1] [--time] [--out=DIR]

One mixer layer's training step (forward and backward of sum(y^2) for its parameters and
input) with the input's length split over n of 8 fake CPU devices (the flag is set here,
before JAX starts). Per device, from the compiled program: XLA's memory analysis
(arguments + outputs + temporaries - aliased) and the bytes its collectives produce (each
collective-permute, all-reduce, all-gather, ... result in the partitioned HLO, counted once:
none of the paths puts a collective inside a loop). --time also runs the step (median of 3;
the fake devices share this machine's cores, so times show overheads, not speed-ups).
Writes sequence_parallel.{json,md} into --out.
"""
from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('mixers', ['performer', 'linear', 'aft_simple', 'aft_local', 'aft_conv',
                             'softmax'], 'Mixers with a sequence-parallel path.')
flags.DEFINE_list('lengths', ['1024', '4096', '16384'], 'Sequence lengths.')
flags.DEFINE_list('shards', ['1', '2', '4', '8'], 'Sequence devices (mesh.sequence).')
flags.DEFINE_integer('dim', 64, 'Model width.')
flags.DEFINE_integer('heads', 4, 'Heads.')
flags.DEFINE_integer('batch', 1, 'Batch rows.')
flags.DEFINE_bool('causal', True, 'Causal mixers (else bidirectional).')
flags.DEFINE_bool('time', False, 'Also run and time the step.')
flags.DEFINE_string('out', 'bench/results/sequence_parallel', 'Output folder.')
flags.DEFINE_list('lm_lengths', [], 'Instead of the mixer sweep: the Enwik8 12L/512 byte LM\'s '
                  'train step (compiled only) at these lengths, batch 1, mesh.sequence=8.')
flags.DEFINE_integer('lm_layers', 12, 'Layers of the --lm_lengths model (12: the paper\'s).')

# The Enwik8 config's paper settings (configs/enwik8.py) where it has them.
OPTIONS = {'aft_local': {'window': 32, 'bias_dim': 256}}
COLLECTIVE = re.compile(r'= (.+?) (all-reduce|all-gather|collective-permute|all-to-all|'
                        r'reduce-scatter)(-start)?\(')
TRIVIAL = re.compile(r'replica_groups=\{\{\d+\}(,\{\d+\})*\}')
SHAPE = re.compile(r'(pred|[a-z]+\d+)\[([\d,]*)\]')
BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'f32': 4, 's32': 4,
         'u32': 4, 'f64': 8, 's64': 8, 'u64': 8}


def collective_bytes(hlo: str) -> dict:
  """{op: bytes} of the collectives' results in a partitioned HLO module (an async start's
  tuple counts its last element, the result). Collectives whose every replica group holds one
  device (left by shard_map's transposes) move nothing and are not counted."""
  out = {}
  for line in hlo.splitlines():
    found = COLLECTIVE.search(line)
    if not found or TRIVIAL.search(line):
      continue
    shapes, op, start = found.groups()
    found = SHAPE.findall(shapes)
    if start and len(found) > 1:
      found = found[-1:]
    n = sum(BYTES.get(t, 4) * math.prod(int(x) for x in d.split(',') if x) for t, d in found)
    out[op] = out.get(op, 0) + n
  return out


def measure(name, length, n, causal):
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

  import mixers
  mesh = jax.make_mesh((1, 1, n, 1), ('data', 'fsdp', 'sequence', 'tensor'),
                       axis_types=(AxisType.Auto,) * 4, devices=jax.devices()[:n])
  mixer = mixers.build(name, dim=FLAGS.dim, num_heads=FLAGS.heads, max_len=length,
                       causal=causal, rngs=nnx.Rngs(0), **OPTIONS.get(name, {}))
  graphdef, params = nnx.split(mixer)

  def step(params, x):
    return jax.value_and_grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) ** 2),
                              argnums=(0, 1))(params, x)
  x = jax.random.normal(jax.random.key(0), (FLAGS.batch, length, FLAGS.dim))
  with jax.set_mesh(mesh):
    x = jax.device_put(x, NamedSharding(mesh, P(None, 'sequence' if n > 1 else None)))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    t = time.perf_counter()
    compiled = jax.jit(step).lower(params, x).compile()
    row = {'mixer': name, 'length': length, 'shards': n, 'causal': causal,
           'compile_s': time.perf_counter() - t}
    m = compiled.memory_analysis()
    row['device_bytes'] = (m.argument_size_in_bytes + m.output_size_in_bytes
                           + m.temp_size_in_bytes - m.alias_size_in_bytes)
    row['temp_bytes'] = m.temp_size_in_bytes
    coll = collective_bytes(compiled.as_text())
    row['collective_bytes'] = sum(coll.values())
    row['collectives'] = coll
    if FLAGS.time:
      jax.block_until_ready(compiled(params, x))
      times = []
      for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - t)
      row['step_s'] = sorted(times)[1]
  return row


def measure_lm(name, length):
  """Per-device bytes of the Enwik8 12L/512 train step (trainlib's), batch 1, length split 8
  ways: compiled, not run."""
  import jax
  import numpy as np
  from configs import enwik8
  from trainlib import state as state_lib
  from trainlib.run import Run
  config = enwik8.get_config(f'mixer={name}')
  config.data.seq_len = config.model.max_len = length
  config.batch_size, config.num_steps = 1, 10
  config.model.num_layers = FLAGS.lm_layers
  config.mesh.update(data=1, sequence=8)
  run = Run(config)
  step = state_lib.make_train_step(run.task.loss, run.model, run.tx, run.lr_fn, config.seed,
                                   run.state_sharding, run.batch_sharding)
  batch = run.to_global({'tokens': np.zeros((1, length + 1), np.int32)})
  t = time.perf_counter()
  with jax.set_mesh(run.mesh):
    compiled = step.lower(run.state, batch).compile()
  m = compiled.memory_analysis()
  return {'mixer': name, 'length': length, 'shards': 8, 'layers': FLAGS.lm_layers,
          'compile_s': time.perf_counter() - t,
          'device_bytes': m.argument_size_in_bytes + m.output_size_in_bytes
          + m.temp_size_in_bytes - m.alias_size_in_bytes,
          'argument_bytes': m.argument_size_in_bytes, 'temp_bytes': m.temp_size_in_bytes,
          'collectives': collective_bytes(compiled.as_text())}


def markdown(rows) -> str:
  shards = sorted({r['shards'] for r in rows})
  mib = lambda b: f'{b / 2 ** 20:,.1f}'
  out = [f'One mixer layer\'s training step, d {FLAGS.dim}, {FLAGS.heads} heads, batch '
         f'{FLAGS.batch}, {"causal" if FLAGS.causal else "bidirectional"}; per device: '
         'XLA memory analysis (MiB) / collective-permute KiB (the path\'s own: summaries, '
         'halos or ring blocks, forward and backward) / all-reduce KiB (mostly the parameter '
         'gradients, as in data parallelism)'
         + (' / step seconds (8 fake devices on this machine\'s cores)' if FLAGS.time else '')
         + '.', '', '| mixer | length | ' + ' | '.join(f'n={n}' for n in shards) + ' |',
         '|---|---|' + '---|' * len(shards)]
  for (name, length) in dict.fromkeys((r['mixer'], r['length']) for r in rows):
    cells = []
    for n in shards:
      r = next((r for r in rows if (r['mixer'], r['length'], r['shards']) == (name, length, n)),
               None)
      if r is None or 'error' in r:
        cells.append(r['error'][:40] if r else '')
        continue
      coll = r['collectives']
      cell = (f'{mib(r["device_bytes"])} / {coll.get("collective-permute", 0) / 1024:,.1f} / '
              f'{coll.get("all-reduce", 0) / 1024:,.1f}')
      if 'step_s' in r:
        cell += f' / {r["step_s"]:.3f}'
      cells.append(cell)
    out.append(f'| {name} | {length} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out) + '\n'


def main(argv):
  del argv
  rows = []
  if FLAGS.lm_lengths:
    for name in FLAGS.mixers:
      for length in map(int, FLAGS.lm_lengths):
        rows.append(measure_lm(name, length))
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, 'sequence_parallel_lm.json'), 'w') as f:
      json.dump({'command': 'python -m bench.sequence_parallel ' + ' '.join(sys.argv[1:]),
                 'rows': rows}, f, indent=1)
    return
  for name in FLAGS.mixers:
    for length in map(int, FLAGS.lengths):
      for n in map(int, FLAGS.shards):
        try:
          row = measure(name, length, n, FLAGS.causal)
        except Exception as e:  # noqa: BLE001 - reported in the table, the sweep goes on
          row = {'mixer': name, 'length': length, 'shards': n, 'error': f'{type(e).__name__}: {e}'}
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(rows)  # after every row: a long sweep stopped early keeps what it measured
  print(markdown(rows))


def write(rows):
  os.makedirs(FLAGS.out, exist_ok=True)
  stem = os.path.join(FLAGS.out, 'sequence_parallel_' + ('causal' if FLAGS.causal else
                                                         'bidirectional'))
  with open(stem + '.json', 'w') as f:
    json.dump({'command': 'python -m bench.sequence_parallel ' + ' '.join(sys.argv[1:]),
               'rows': rows}, f, indent=1)
  with open(stem + '.md', 'w') as f:
    f.write(markdown(rows))


if __name__ == '__main__':
  app.run(main)
