"""Model speed for ImageNet: inference images/s, peak memory and #params of each Table 7 row at
224, with the paper's V100 numbers beside them; train-step images/s for tiny and small with
softmax, AFT-full and AFT-conv.

  python -m bench.imagenet_models [--batch=32] [--train_batch=16] [--repeats=3]
      [--rows=all] [--train=true] [--out=bench/results/imagenet]

Each case runs in a fresh process (the parent starts no JAX backend). Inference is the jitted
forward of the configs/imagenet.py model in float32 on random images; memory is the process's
peak resident set during the timed calls (compiler excluded, as bench/measure.py does). The
train step is trainlib's (trainlib.run.Run, what train.py runs) with the full recipe's on-device
part (erasing, Mixup/CutMix) and the config's bfloat16 compute.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# Table 7: (mixer, size, kernel, heads) -> (top-1, #params M, V100 images/s, V100 memory GB)
TABLE7 = {
    ('softmax', 'tiny', 11, 0): (72.2, 5.7, 2507, 1.9),
    ('softmax', 'small', 11, 0): (79.9, 22.1, 1010, 2.9),
    ('aft_full', 'tiny', 11, 0): (72.4, 6.3, 2523, 1.8),
    ('aft_full', 'small', 11, 0): (79.8, 22.6, 1011, 2.6),
    ('aft_conv', 'tiny', 11, 32): (73.9, 5.4, 2359, 1.8),
    ('aft_conv', 'tiny', 11, 192): (74.8, 5.9, 2365, 2.2),
    ('aft_conv', 'small', 11, 16): (80.2, 20.3, 989, 2.5),
    ('aft_conv', 'small', 11, 384): (80.8, 22.5, 936, 3.2),
    ('aft_conv', 'small', 15, 384): (81.0, 23.0, 936, 3.2),
}
TRAIN = [('softmax', 'tiny', 11, 0), ('aft_full', 'tiny', 11, 0), ('aft_conv', 'tiny', 11, 192),
         ('softmax', 'small', 11, 0), ('aft_full', 'small', 11, 0),
         ('aft_conv', 'small', 11, 384)]


def arg(row) -> str:
  mixer, size, kernel, heads = row
  return f'mixer={mixer},size={size},kernel={kernel},heads={heads}'


def infer(row, batch: int, repeats: int) -> dict:
  import jax
  import numpy as np
  from flax import nnx
  from bench.measure import ResidentSet, median_time
  from configs import imagenet
  from tasks import imagenet as task_lib
  task = task_lib.Task(imagenet.get_config(arg(row)))
  model = task.build_model(nnx.Rngs(0))
  params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  graphdef, state = nnx.split(model)
  fwd = jax.jit(lambda s, x: task.logits(nnx.merge(graphdef, s), {'image': x}))
  images = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), np.uint8)
  fwd(state, images).block_until_ready()
  rss = ResidentSet()
  base = rss.start()
  seconds, _ = median_time(lambda: fwd(state, images).block_until_ready(), repeats, warmup=0)
  return {'params_m': params / 1e6, 'images_per_s': batch / seconds,
          'peak_mib': (rss.peak() - 0) / 2**20, 'delta_mib': (rss.peak() - base) / 2**20}


def train_step(row, batch: int, repeats: int) -> dict:
  import jax
  import numpy as np
  from bench.measure import median_time
  from configs import imagenet
  from trainlib.run import Run
  config = imagenet.get_config(arg(row))
  config.batch_size = batch
  run = Run(config, steps=1000)
  rng = np.random.default_rng(0)
  batch_data = run.to_global({'image': rng.integers(0, 256, (batch, 224, 224, 3), np.uint8),
                              'label': rng.integers(0, 1000, batch).astype(np.int32)})
  state = {'s': run.state}

  def step():
    state['s'], metrics = run.train_step(state['s'], batch_data)
    jax.block_until_ready(metrics)
  seconds, _ = median_time(step, repeats, warmup=1)
  return {'images_per_s': batch / seconds, 'step_s': seconds}


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--train_batch', type=int, default=16)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--rows', default='all', help="'all' or indices into Table 7, e.g. 0,4")
  p.add_argument('--train', default='true')
  p.add_argument('--out', default='bench/results/imagenet')
  p.add_argument('--case', default='', help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.case:  # a worker
    kind, index = a.case.split(':')
    row = list(TABLE7)[int(index)]
    fn = infer if kind == 'infer' else train_step
    print(json.dumps(fn(row, a.batch if kind == 'infer' else a.train_batch, a.repeats)))
    return 0
  rows = list(range(len(TABLE7))) if a.rows == 'all' else [int(i) for i in a.rows.split(',')]
  cases = [('infer', i) for i in rows]
  if a.train == 'true':
    cases += [('train', list(TABLE7).index(r)) for r in TRAIN]
  results = []
  for kind, i in cases:
    cmd = [sys.executable, '-m', 'bench.imagenet_models', f'--case={kind}:{i}',
           f'--batch={a.batch}', f'--train_batch={a.train_batch}', f'--repeats={a.repeats}']
    out = subprocess.run(cmd, capture_output=True, text=True)
    value = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else
             {'error': out.stderr.strip().splitlines()[-1][:200]})
    results.append({'kind': kind, 'row': list(TABLE7)[i], **value})
    print(kind, arg(list(TABLE7)[i]), value, flush=True)
    write(results, a)  # after each case: a long run interrupted keeps what it measured
  print(write(results, a))
  return 0


def write(results, a) -> str:
  from bench import system
  lines = [f'Command: `python -m bench.imagenet_models --batch={a.batch} '
           f'--train_batch={a.train_batch} --repeats={a.repeats}`\n',
           f'Machine: {system.cpu_model()}, {system.cpu_cores()} cores, CPU only, shared with '
           f'other jobs (absolute numbers low and noisy). Paper: one V100, batch 256.\n',
           f'Inference at 224, batch {a.batch}, float32, median of {a.repeats}:\n',
           '| model (config args) | #params (M) ours / paper | images/s ours (CPU) | '
           'images/s paper (V100) | peak RSS (MiB) ours | memory paper (GB) | top-1 paper |',
           '|---|---|---|---|---|---|---|']
  for r in results:
    if r['kind'] != 'infer':
      continue
    top1, params, ips, mem = TABLE7[r['row']]
    if 'error' in r:
      lines.append(f'| {arg(r["row"])} | - / {params} | {r["error"]} | {ips} | - | {mem} | '
                   f'{top1} |')
    else:
      lines.append(f'| {arg(r["row"])} | {r["params_m"]:.2f} / {params} | '
                   f'{r["images_per_s"]:.1f} | {ips} | {r["peak_mib"]:.0f} | {mem} | {top1} |')
  train_rows = [r for r in results if r['kind'] == 'train']
  if train_rows:
    lines += [f'\nTrain step (trainlib, bfloat16 compute, batch {a.train_batch}, median of '
              f'{a.repeats} after one warm-up step):\n', '| model | images/s (CPU) |', '|---|---|']
    lines += [f'| {arg(r["row"])} | ' + (f'{r["images_per_s"]:.1f} |' if 'error' not in r
                                          else f'{r["error"]} |') for r in train_rows]
  text = '\n'.join(lines) + '\n'
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, 'models_cpu.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(a.out, 'models_cpu.json'), 'w') as f:
    json.dump(results, f, indent=1, default=str)
  return text


if __name__ == '__main__':
  sys.exit(main())
