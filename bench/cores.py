"""The attention cores alone beside their peers, in one run (issue 22's table).

  python -m bench.cores [--cores=softmax,aft_simple,...] [--lengths=16384]
      [--modes=causal,bidirectional] [--batch=1 --heads=8 --head_dim=64] [--repeats=3]
      [--out=bench/results/cores]

A core maps q, k, v to the output with no projections; forward and forward+backward (the
gradient with respect to q, k, v for a random output cotangent made beforehand, as a layer
above hands one down) are timed after compilation and a
warm-up, median of --repeats, each (core, mode, length) in a fresh process. Memory (on a
GPU the device's peak bytes): how far the process's resident set rose during the phase's
calls (inputs already resident, so the gradients and everything the core keeps count;
fwd+bwd runs first in its process, so no freed buffer of another phase hides in the
allocator's heap); XLA's temporary bytes beside it. Each of ours is set against the peer
(or, for AFT-local and AFT-conv, the core) it should beat: `ratio` is ours / that one.
PyTorch and linear-attention-transformer peers need the packages of
bench/requirements-peers.txt; without them they are named and skipped.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from absl import app, flags

from bench import report, system
from bench.sweep import memory_limit, probe, sweep, torch_skip_reason

FLAGS = flags.FLAGS
OURS = ('favor', 'linear', 'softmax', 'aft_simple', 'aft_local', 'aft_conv')
JAX_PEERS = ('jax_favor_scan',)
TORCH_PEERS = ('torch_sdpa', 'lat_causal', 'lat_linear')
# (core, mode) -> what it is measured against.
VERSUS = {('favor', 'causal'): 'jax_favor_scan', ('linear', 'causal'): 'lat_causal',
          ('linear', 'bidirectional'): 'lat_linear', ('softmax', 'causal'): 'torch_sdpa',
          ('softmax', 'bidirectional'): 'torch_sdpa', ('aft_local', 'causal'): 'aft_simple',
          ('aft_conv', 'causal'): 'aft_simple', ('aft_local', 'bidirectional'): 'aft_simple',
          ('aft_conv', 'bidirectional'): 'aft_simple'}
COLUMNS = ('impl', 'mode', 'length', 'status', 'fwd_s', 'fwdbwd_s', 'fwdbwd_peak_bytes',
           'fwdbwd_xla_temp_bytes', 'fwdbwd_compile_s', 'error')


def available(names, machine: dict) -> list[str]:
  """The PyTorch peers that can run here, beside JAX on its device (the others are named
  and skipped)."""
  needs = {'torch_sdpa': 'torch', 'lat_causal': 'linear_attention_transformer',
           'lat_linear': 'linear_attention_transformer'}
  out = []
  for name in names:
    skip = torch_skip_reason(machine)
    if skip is None and importlib.util.find_spec(needs[name]) is None:
      skip = f'{needs[name]} is not installed (pip install -r bench/requirements-peers.txt)'
    if skip:
      print(f'peer {name} skipped: {skip}', flush=True)
    else:
      out.append(name)
  return out


def peak(row: dict) -> int | None:
  """fwd+bwd memory: the device's peak where there is one, else the resident set's rise."""
  return report.add_peaks(row)['fwdbwd_peak_bytes']


def markdown(rows) -> str:
  find = {(r['impl'], r['mode'], r['length']): r for r in rows}
  out = ['| core | mode | L | fwd | fwd+bwd | bwd / fwd | memory | XLA temp | vs | time ratio '
         '| memory ratio |', '|---' * 11 + '|']
  fmt = lambda v, unit: '—' if v is None else report.human(v, unit)
  for r in rows:
    if r['status'] != 'ok':
      if r['status'] != 'n/a':
        out.append(f'| {r["impl"]} | {r["mode"]} | {r["length"]} | {r["status"]} |'
                   + ' |' * 7)
      continue
    bwd = r['fwdbwd_s'] / r['fwd_s'] - 1 if r.get('fwd_s') else None
    other = VERSUS.get((r['impl'], r['mode']))
    ref = find.get((other, r['mode'], r['length']))
    ok = ref is not None and ref['status'] == 'ok'
    ratio = lambda a, b: f'{a / b:.2f}' if ok and a and b else ''
    out.append(' | '.join([
        f'| {r["impl"]}', r['mode'], str(r['length']), fmt(r.get('fwd_s'), 'time'),
        fmt(r['fwdbwd_s'], 'time'), '' if bwd is None else f'{bwd:.2f}',
        fmt(peak(r), 'bytes'), fmt(r.get('fwdbwd_xla_temp_bytes'), 'bytes'),
        other if ok else '', ratio(r['fwdbwd_s'], ok and ref['fwdbwd_s']),
        ratio(peak(r), ok and peak(ref))]) + ' |')
  return '\n'.join(out) + '\n'


def memory_slopes(rows) -> str:
  """Log-log slopes of each core's fwd+bwd time, memory and XLA temporary bytes against L
  (2+ lengths; the resident set's includes fixed costs of the runtime, XLA's does not)."""
  lines = []
  for impl, mode in dict.fromkeys((r['impl'], r['mode']) for r in rows):
    pts = [(r['length'], r) for r in rows
           if (r['impl'], r['mode']) == (impl, mode) and r['status'] == 'ok']
    fit = lambda value: report.slope([(n, value(r)) for n, r in pts], 0)
    time, mem, temp = (fit(lambda r: r['fwdbwd_s']), fit(peak),
                       fit(lambda r: r.get('fwdbwd_xla_temp_bytes')))
    if mem is not None:
      lines.append(f'| {impl} | {mode} | {time:.2f} | {mem:.2f} | '
                   f'{"—" if temp is None else f"{temp:.2f}"} |')
  if not lines:
    return ''
  return ('\n| core | mode | time slope | memory slope | XLA temp slope |\n|---|---|---|---|---|\n'
          + '\n'.join(lines) + '\n')


def main(argv):
  del argv
  names = FLAGS.cores or list(OURS + JAX_PEERS + TORCH_PEERS)
  unknown = sorted(set(names) - set(OURS + JAX_PEERS + TORCH_PEERS))
  if unknown:
    raise app.UsageError(f'unknown core(s) {unknown}; known: '
                         f'{", ".join(OURS + JAX_PEERS + TORCH_PEERS)}')
  if set(FLAGS.modes) - {'causal', 'bidirectional'}:
    raise app.UsageError(f'--modes takes causal and/or bidirectional, got {FLAGS.modes}')
  machine = probe(FLAGS.timeout)
  torch_ok = set(available([n for n in names if n in TORCH_PEERS], machine))
  shape = dict(batch=FLAGS.batch, heads=FLAGS.heads, head_dim=FLAGS.head_dim,
               repeats=FLAGS.repeats,
               memory_limit_bytes=memory_limit(machine['backend'], FLAGS.memory_limit_gb))
  cases = [dict(kind='torch_core' if name in TORCH_PEERS else 'core', impl=name, mode=mode,
                source='ours' if name in OURS else 'peer', **shape)
           for name in names if name not in TORCH_PEERS or name in torch_ok
           for mode in FLAGS.modes]
  lengths = [int(n) for n in FLAGS.lengths]
  rows = sweep(cases, lengths, FLAGS.timeout, log=lambda r: print(
      f'{r["impl"]:>15} {r["mode"]:<13} L={r["length"]:<6} {r["status"]:<7} ' +
      (f'fwd {report.human(r["fwd_s"], "time")}  fwd+bwd {report.human(r["fwdbwd_s"], "time")}'
       f'  memory {report.human(peak(r) or 0, "bytes")}' if r['status'] == 'ok'
       else r.get('error', '')), flush=True))
  rows = [report.add_peaks(r) for r in rows]
  rows.sort(key=lambda r: (r['mode'], r['length'], names.index(r['impl'])))
  meta = {'command': 'python -m bench.cores ' + ' '.join(sys.argv[1:]), 'machine': machine,
          'versions': system.versions()}
  stem = f'cores_{machine["backend"]}'
  paths = report.write_raw(rows, meta, FLAGS.out, stem, COLUMNS)
  text = report.header(meta) + '\n' + markdown(rows) + memory_slopes(rows)
  paths.append(os.path.join(FLAGS.out, f'{stem}.md'))
  with open(paths[-1], 'w') as f:
    f.write(text)
  print('\n' + text)
  print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
  flags.DEFINE_list('cores', None, f'Cores to measure (default: all): ours {", ".join(OURS)}; '
                    f'peers {", ".join(JAX_PEERS + TORCH_PEERS)}.')
  flags.DEFINE_list('lengths', ['16384'], 'Sequence lengths.')
  flags.DEFINE_list('modes', ['causal', 'bidirectional'], 'causal and/or bidirectional.')
  flags.DEFINE_integer('batch', 1, 'Batch size.')
  flags.DEFINE_integer('heads', 8, 'Heads; the width is heads * head_dim.')
  flags.DEFINE_integer('head_dim', 64, 'Width per head.')
  flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (the median is reported).')
  flags.DEFINE_string('out', 'bench/results/cores', 'Output directory.')
  flags.DEFINE_float('timeout', 900, 'Seconds per (core, mode, length).')
  flags.DEFINE_float('memory_limit_gb', -1, 'Address-space cap per CPU worker in GiB; '
                     '-1: 90% of RAM; 0: none.')
  app.run(main)
