"""Training throughput: tokens/s of a task's train step (Enwik8 by default) for each
mixer, the share of the step spent in the mixers, and the first step's wait (compile + run);
with --peers, beside the same model written in PyTorch.

  python -m bench.train_step [--mixers=softmax,aft_simple] [--lengths=1024,4096] [--peers]
      [--config=configs/enwik8.py] [--config.model.num_layers=4 ...] [--out=bench/results]
  # the Enwik8 paper model (12 layers, d 512, T 1024) against PyTorch, at batch 2:
  python -m bench.train_step --mixers=softmax,aft_local,aft_simple --lengths=1024 \
      --small_model=false --config.batch_size=2 --peers --out=bench/results/train_peer
  # the CIFAR-10 paper model (24 layers, d 256, T 3072) at batch 1:
  python -m bench.train_step --config=configs/cifar10.py:mixer=aft_local --mixers=aft_local \
      --small_model=false --config.batch_size=1 --out=bench/results/cifar/aft_local

The step is trainlib's jitted train step (trainlib.run.Run, as train.py builds
it) on random tokens, for a small model by default (SMALL_MODEL; any --config.* flag
overrides it). The mixer share is num_layers x (one mixer's forward+backward at the
step's shapes, timed alone) / (the step's time). Each (mixer, length) runs in a fresh
process. Writes train_step_<backend>.{csv,json,md} into --out.

--peers adds torch_sdpa (bench/torch_train.py; text tasks): the same causal LM in PyTorch with
F.scaled_dot_product_attention (pre-LN blocks, same MLP, same parameter count, AdamW with the
config's settings and clipping, dropout, threads = the cores), timed the same way; each row's
"x torch_sdpa" is its tokens/s over the peer's at that length (and "x softmax" over our
softmax's). Skipped, with the reason, where torch
is not importable or runs on another device than JAX.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

import mixers
from bench import lm_spec, report, system
from bench.sweep import memory_limit, probe, sweep, torch_skip_reason
from configs.common import override
import tasks

FLAGS = flags.FLAGS
SMALL_MODEL = {'model.num_layers': 2, 'model.dim': 256, 'model.num_heads': 4,
               'model.mlp_dim': 1024, 'batch_size': 4}
COLUMNS = ('impl', 'length', 'status', 'batch', 'num_layers', 'dim', 'heads', 'mlp_dim', 'dtype',
           'params', 'step_s', 'tokens_per_s', 'ratio_to_softmax', 'ratio_to_peer', 'mixer_fwdbwd_s',
           'mixer_share',
           'first_step_s', 'wall_s', 'error')
PEER = 'torch_sdpa'


def ratios(rows: list[dict], peer: str) -> dict:
  """{(impl, length): tokens/s over `peer`'s at that length} for the rows where both ran."""
  base = {r['length']: r['tokens_per_s'] for r in rows
          if r['impl'] == peer and r['status'] == 'ok'}
  return {(r['impl'], r['length']): r['tokens_per_s'] / base[r['length']] for r in rows
          if r['status'] == 'ok' and r['length'] in base}


def markdown(rows, lengths) -> str:
  ok = [r for r in rows if r['status'] == 'ok']
  model = (f'Model: {ok[0]["num_layers"]} layers, d {ok[0]["dim"]}, {ok[0]["heads"]} heads, '
           f'MLP {ok[0]["mlp_dim"]}, batch {ok[0]["batch"]}, {ok[0]["dtype"]}. ' if ok else '')
  refs = [ref for ref in (report.REFERENCE, PEER) if any(r['impl'] == ref for r in rows)]
  per_length = ['tokens/s'] + [f'x {ref}' for ref in refs] + ['mixer share', 'first step s']
  out = [model + 'Mixer share: layers x (one mixer\'s forward+backward at the step\'s shapes, '
         'timed alone) / (the train step\'s time). First step: compile + the first step (what a '
         'run waits for at start). x <row>: tokens/s over that row\'s at the same length.', '',
         '| mixer | params | ' + ' | '.join(f'T={n} {c}' for n in lengths for c in per_length)
         + ' |', '|---' * (len(per_length) * len(lengths) + 2) + '|']
  ratio = {ref: ratios(rows, ref) for ref in refs}
  for impl in dict.fromkeys(r['impl'] for r in rows):
    mine = [r for r in rows if r['impl'] == impl]
    counts = sorted({f'{r["params"]:,}' for r in mine if r.get('params')})
    cells = [', '.join(counts)]
    for n in lengths:
      r = next(r for r in mine if r['length'] == n)
      if r['status'] == 'ok':
        cells += [f'{r["tokens_per_s"]:,.0f}'] + [
            f'{ratio[ref][impl, n]:.2f}' if (impl, n) in ratio[ref] else '' for ref in refs] + [
            '' if r.get('mixer_share') is None else f'{100 * r["mixer_share"]:.0f}%',
            f'{r["first_step_s"]:.1f}']
      else:
        cells += ['—' if r['status'] == 'skipped' else r['status']] + [''] * (len(per_length) - 1)
    out.append(f'| {impl} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out) + '\n'


def peer_case(path: str, overrides: dict, machine: dict) -> list[dict]:
  """The PyTorch case with the resolved model and optimizer (its worker reads no JAX config);
  none, with the reason printed, where it cannot run."""
  skip = torch_skip_reason(machine)
  if 'seq_len' not in FLAGS.config.data:
    skip = 'the PyTorch model is the text LM (no start token), this task is not'
  if skip:
    print(f'PyTorch peer skipped: {skip}', flush=True)
    return []
  config = override(FLAGS.config.copy_and_resolve_references(), overrides)
  return [{'kind': 'torch_train', 'impl': PEER, 'config': path, 'overrides': overrides,
           'repeats': FLAGS.repeats, 'model': lm_spec.model_spec(config),
           'memory_limit_bytes': memory_limit(machine['backend'], FLAGS.memory_limit_gb)}]


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.mixers or []) - set(mixers.names()))
  if unknown:
    raise app.UsageError(f'unknown mixer(s) {unknown}; registered: {", ".join(mixers.names())}')
  machine = probe(FLAGS.timeout)
  backend = machine['backend']
  path = config_flags.get_config_filename(FLAGS['config'])
  overrides = {**(SMALL_MODEL if FLAGS.small_model else {}),
               **config_flags.get_override_values(FLAGS['config'])}
  lengths = sorted(int(n) for n in FLAGS.lengths)
  if 'seq_len' not in FLAGS.config.data:  # an image's token count is fixed by the task
    lengths = [tasks.get(FLAGS.config).seq_len]
    print(f'image task: T = {lengths[0]} tokens per image (--lengths ignored)', flush=True)
  cases = [{'kind': 'train', 'impl': name, 'config': path, 'repeats': FLAGS.repeats,
            'memory_limit_bytes': memory_limit(backend, FLAGS.memory_limit_gb),
            'overrides': {**overrides, 'model.mixer': name}}
           for name in (FLAGS.mixers or mixers.names())]
  if FLAGS.peers:
    cases += peer_case(path, overrides, machine)
  rows = sweep(cases, lengths, FLAGS.timeout, log=lambda r: print(
      f'{r["impl"]:>12} T={r["length"]:<6} {r["status"]:<7} ' + (
          f'{r["tokens_per_s"]:,.0f} tokens/s, first step {r["first_step_s"]:.1f} s' + (
              '' if r.get('mixer_share') is None else
              f', mixers {100 * r["mixer_share"]:.0f}% of the step')
          if r['status'] == 'ok' else r.get('error', '')), flush=True))
  to_softmax, to_peer = ratios(rows, report.REFERENCE), ratios(rows, PEER)
  for r in rows:
    r['ratio_to_softmax'] = to_softmax.get((r['impl'], r['length']))
    r['ratio_to_peer'] = to_peer.get((r['impl'], r['length']))
  meta = {'command': 'python -m bench.train_step ' + ' '.join(sys.argv[1:]),
          'machine': machine,
          'versions': system.versions(), 'config': path, 'overrides': overrides}
  stem = f'train_step_{backend}'
  paths = report.write_raw(rows, meta, FLAGS.out, stem, COLUMNS)
  paths.append(os.path.join(FLAGS.out, f'{stem}.md'))
  text = report.header(meta) + '\n' + markdown(rows, lengths)
  with open(paths[-1], 'w') as f:
    f.write(text)
  print('\n' + text)
  print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', 'configs/enwik8.py', 'Task config; --config.* '
                                  'flags override it and the small model.', lock_config=True)
  flags.DEFINE_list('mixers', None, 'Registered mixers to measure (default: all).')
  flags.DEFINE_list('lengths', ['1024', '4096'], 'Sequence lengths T (text tasks).')
  flags.DEFINE_bool('small_model', True, 'Shrink the model to SMALL_MODEL; false: the '
                    "config's own model (the paper's size).")
  flags.DEFINE_integer('repeats', 3, 'Timed steps (the median is reported).')
  flags.DEFINE_bool('peers', False, 'Also measure the same model in PyTorch (torch_sdpa) where '
                    'torch is importable; adds the x torch_sdpa column.')
  flags.DEFINE_string('out', 'bench/results', 'Output directory.')
  flags.DEFINE_float('timeout', 900, 'Seconds per (mixer, length).')
  flags.DEFINE_float('memory_limit_gb', -1, 'Address-space cap per CPU worker in GiB; '
                     '-1: 90% of RAM; 0: none.')
  app.run(main)
