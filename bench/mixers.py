"""Speed and memory of every mixer against length, beside the peers, in one run.

  python -m bench.mixers [--mixers=softmax,performer] [--lengths=256,1024,4096,16384]
      [--modes=causal,bidirectional] [--batch=1 --heads=8 --head_dim=64] [--repeats=3]
      [--peers [--peer_list=torch_sdpa,...]] [--out=bench/results]

Each (implementation, mode, length) runs in a fresh process (bench/worker.py):
forward and forward+backward (the gradient of sum(y) w.r.t. the parameters and x)
are timed after compilation and a warm-up, median of --repeats, and their memory
taken from XLA's compiled memory analysis, the device's peak bytes (GPU) and the
process's peak resident set (CPU). Writes mixers_<backend>.{csv,json,md} and PNG
plots into --out.
"""
from __future__ import annotations

import sys

from absl import app, flags

import mixers
from bench import report, system
from bench.sweep import memory_limit, probe, sweep, torch_skip_reason

FLAGS = flags.FLAGS
CPU_LENGTHS = (256, 1024, 4096, 16384)
ACCELERATOR_LENGTHS = CPU_LENGTHS + (32768, 65536)


def peers(machine: dict) -> list[tuple[str, str]]:
  """(name, worker kind) of the peers that can run here; the others are named and skipped.

  PyTorch peers run only on the device the JAX ones use (a CPU build of torch beside a
  GPU would compare devices, not implementations)."""
  gpu = machine['backend'] == 'gpu'
  out = [('jax_dpa_xla', 'jax')] + ([('jax_dpa_cudnn', 'jax')] if gpu else [])
  out.append(('jax_favor_scan', 'jax'))
  skip = torch_skip_reason(machine)
  if skip:
    print(f'PyTorch peers skipped: {skip}', flush=True)
  else:
    out += [('torch_sdpa', 'torch'), ('torch_linear', 'torch')]
    if machine['performer_pytorch']:
      out.append(('performer_pytorch', 'torch'))
    else:
      print('peer performer_pytorch skipped: performer_pytorch is not installed', flush=True)
  return out


def describe(row: dict) -> str:
  parts = [f'{row["impl"]:>18} {row["mode"]:<13} L={row["length"]:<6} {row["status"]:<7}']
  for key, label, unit in (('fwd_s', 'fwd', 'time'), ('fwdbwd_s', 'fwd+bwd', 'time'),
                           ('fwdbwd_xla_bytes', 'xla', 'bytes')):
    if row.get(key) is not None:
      parts.append(f'{label} {report.human(row[key], unit)}')
  if row.get('error') and row['status'] != 'skipped':
    parts.append(row['error'])
  return '  '.join(parts)


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.mixers or []) - set(mixers.names()))
  if unknown:
    raise app.UsageError(f'unknown mixer(s) {unknown}; registered: {", ".join(mixers.names())}')
  modes = FLAGS.modes
  if set(modes) - {'causal', 'bidirectional'}:
    raise app.UsageError(f'--modes takes causal and/or bidirectional, got {modes}')
  machine = probe(FLAGS.timeout)
  backend = machine['backend']
  impls = [(name, 'jax', 'ours') for name in (FLAGS.mixers or mixers.names())]
  if FLAGS.peers:
    chosen = peers(machine)
    if FLAGS.peer_list:
      unknown = sorted(set(FLAGS.peer_list) - {name for name, _ in chosen})
      if unknown:
        raise app.UsageError(f'peer(s) {unknown} cannot run here; available: '
                             f'{", ".join(name for name, _ in chosen)}')
      chosen = [(name, kind) for name, kind in chosen if name in FLAGS.peer_list]
    impls += [(name, kind, 'peer') for name, kind in chosen]
  shape = dict(batch=FLAGS.batch, heads=FLAGS.heads, head_dim=FLAGS.head_dim,
               repeats=FLAGS.repeats,
               memory_limit_bytes=memory_limit(backend, FLAGS.memory_limit_gb))
  cases = [dict(kind=kind, impl=name, mode=mode, source=source,
                framework='torch' if kind == 'torch' else 'jax', **shape)
           for name, kind, source in impls for mode in modes]
  lengths = [int(n) for n in FLAGS.lengths or (CPU_LENGTHS if backend == 'cpu' else
                                                  ACCELERATOR_LENGTHS)]
  rows = sweep(cases, lengths, FLAGS.timeout,
               log=lambda row: print(describe(row), flush=True))
  meta = {'command': 'python -m bench.mixers ' + ' '.join(sys.argv[1:]),
          'machine': machine,
          'versions': system.versions(),
          'settings': {'lengths': lengths, **{
              k: FLAGS[k].value for k in ('mixers', 'modes', 'batch', 'heads', 'head_dim',
                                          'repeats', 'peers', 'peer_list', 'timeout')}}}
  paths, text = report.write_all(rows, meta, FLAGS.out, f'mixers_{backend}',
                                 FLAGS.fit_min_length)
  print('\n' + text)
  print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
  flags.DEFINE_list('mixers', None, 'Registered mixers to measure (default: all).')
  flags.DEFINE_list('lengths', None, 'Sequence lengths (default: 256 to 16K on a CPU, '
                    'to 64K on an accelerator).')
  flags.DEFINE_list('modes', ['causal', 'bidirectional'], 'causal and/or bidirectional.')
  flags.DEFINE_integer('batch', 1, 'Batch size.')
  flags.DEFINE_integer('heads', 8, 'Heads; the width is heads * head_dim.')
  flags.DEFINE_integer('head_dim', 64, 'Width per head.')
  flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (the median is reported).')
  flags.DEFINE_bool('peers', False, 'Also measure the peers that are importable.')
  flags.DEFINE_list('peer_list', None, 'With --peers: only these peers (default: every one '
                    'that can run here).')
  flags.DEFINE_string('out', 'bench/results', 'Output directory.')
  flags.DEFINE_float('timeout', 900, 'Seconds per (implementation, mode, length).')
  flags.DEFINE_integer('fit_min_length', 1024, 'Shortest length in the log-log slope fits.')
  flags.DEFINE_float('memory_limit_gb', -1, 'Address-space cap per CPU worker in GiB; '
                     '-1: 90% of RAM; 0: none.')
  app.run(main)
