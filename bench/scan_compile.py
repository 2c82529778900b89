"""Compile time and step time of a task's train step with the layers looped and scanned, and the
compiled peak memory of each remat policy.

  python -m bench.scan_compile --config=configs/cifar10.py:mixer=aft_local --batch=1 \
      --out=bench/results/scan/cifar
  python -m bench.scan_compile --config=configs/enwik8.py:mixer=softmax --batch=1 \
      --out=bench/results/scan/enwik8

The step is trainlib's jitted train step (trainlib.run.Run, as train.py builds it) on random
tokens at the config's own model size. compile_s is lowering + XLA compilation (wall and this
process's CPU seconds: on a shared machine the CPU seconds are the steadier figure); step_s the
median of --steps timed steps after the first. Peak memory is XLA's own account of the compiled
step (memory_analysis: arguments + outputs + temporaries - aliased donations), taken at
--memory_batch examples per device without running it. Writes scan_compile_<backend>.{json,md}.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

import tasks
from bench import system
from configs.common import override
from models.blocks import REMAT_POLICIES
from trainlib.run import Run

FLAGS = flags.FLAGS


def _timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


def compile_step(config, batch_size: int):
  """(compiled step, its inputs, lower+compile wall s, CPU s) of `config` at `batch_size`."""
  config = override(config.copy_and_resolve_references(), {'batch_size': batch_size})
  run = Run(config, steps=1000)
  task, m = run.task, config.model
  extra = 0 if task.start_token else 1  # text windows hold T + 1 tokens
  tokens = np.random.default_rng(0).integers(0, m.vocab_size, (batch_size, task.seq_len + extra),
                                             dtype=np.int32)
  batch = run.to_global({'tokens': tokens})
  compiled, wall, cpu = _timed(lambda: run.train_step.lower(run.state, batch).compile())
  return compiled, run.state, batch, wall, cpu


def peak_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def measure(config, scan: bool, remat: str, batch: int, steps: int) -> dict:
  cfg = override(config.copy_and_resolve_references(),
                 {'model.scan_layers': scan, 'model.remat': remat})
  compiled, state, inputs, wall, cpu = compile_step(cfg, batch)
  times = []
  for _ in range(steps + 1):
    t = time.perf_counter()
    state, metrics = compiled(state, inputs)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  return {'scan_layers': scan, 'remat': remat, 'batch': batch, 'compile_s': wall,
          'compile_cpu_s': cpu, 'step_s': statistics.median(times[1:]), 'step_times': times,
          'peak_bytes': peak_bytes(compiled)}


def markdown(meta, rows, memory) -> str:
  m = meta['model']
  out = [f'{meta["config"]}: {m["num_layers"]} layers, d {m["dim"]}, mixer {m["mixer"]}, '
         f'T {meta["length"]}; {meta["machine"]}. Command: `{meta["command"]}`', '',
         f'| layers | remat | compile s (wall) | compile s (CPU) | step s (batch {FLAGS.batch}) |'
         ' peak MiB |', '|---|---|---|---|---|---|']
  for r in rows:
    out.append(f'| {"scanned" if r["scan_layers"] else "looped"} | {r["remat"]} | '
               f'{r["compile_s"]:.1f} | {r["compile_cpu_s"]:.1f} | {r["step_s"]:.2f} | '
               f'{r["peak_bytes"] / 2**20:,.0f} |')
  out += ['', f'Peak memory of the compiled step per remat policy (scanned, batch '
          f'{FLAGS.memory_batch}, not run):', '', '| remat | peak MiB |', '|---|---|']
  out += [f'| {k} | {v / 2**20:,.0f} |' for k, v in memory.items()]
  return '\n'.join(out) + '\n'


def main(argv):
  del argv
  config = FLAGS.config
  rows = []
  for scan in (False, True):
    rows.append(measure(config, scan, 'none', FLAGS.batch, FLAGS.steps))
    print(json.dumps({k: v for k, v in rows[-1].items() if k != 'step_times'}), flush=True)
  memory = {}
  for remat in REMAT_POLICIES:
    cfg = override(config.copy_and_resolve_references(),
                   {'model.scan_layers': True, 'model.remat': remat})
    memory[remat] = peak_bytes(compile_step(cfg, FLAGS.memory_batch)[0])
    print(f'remat {remat}: peak {memory[remat] / 2**20:,.0f} MiB', flush=True)
  meta = {'command': 'python -m bench.scan_compile ' + ' '.join(sys.argv[1:]),
          'config': config_flags.get_config_filename(FLAGS['config']),
          'model': {k: config.model[k] for k in ('num_layers', 'dim', 'mixer')},
          'length': tasks.get(config).seq_len, 'versions': system.versions(),
          'machine': f'{jax.devices()[0].device_kind} ({jax.device_count()} device(s)), '
                     f'{os.cpu_count()} CPUs'}
  os.makedirs(FLAGS.out, exist_ok=True)
  stem = os.path.join(FLAGS.out, f'scan_compile_{jax.default_backend()}')
  with open(stem + '.json', 'w') as f:
    json.dump({'meta': meta, 'rows': rows, 'peak_bytes_by_remat': memory}, f, indent=2)
  text = markdown(meta, rows, memory)
  with open(stem + '.md', 'w') as f:
    f.write(text)
  print('\n' + text + f'\nwrote {stem}.json, {stem}.md')


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', 'configs/enwik8.py', 'Task config; --config.* '
                                  'flags override it.', lock_config=False)
  flags.DEFINE_integer('batch', 1, 'Examples per step for the timed steps.')
  flags.DEFINE_integer('memory_batch', 16, 'Examples per step for the memory per remat policy '
                       '(16: the paper\'s 128 over 8 GPUs).')
  flags.DEFINE_integer('steps', 2, 'Timed steps after the first (the median is reported).')
  flags.DEFINE_string('out', 'bench/results/scan', 'Output directory.')
  app.run(main)
