"""Compile time of the first train step of every task config: what a user waits for at every
start (and every restart) before the first step runs.

  python -m bench.compile_times [--case=enwik8 --case=lra:task=text,variant=small ...]
      [--batch_size=1]
      [--layouts=looped,scanned] [--mixer=aft_local] [--timeout=900] [--out=bench/results/compile]

Each (config, layout) runs in a fresh process (bench/worker.py, kind 'train' with
compile_only): trainlib.run.Run builds the config's own model, and the jitted train step is
lowered (traced to StableHLO), compiled by XLA and run once on a random batch of the task's
shapes, each timed apart. The batch size is overridden (--batch_size) so the full-size models fit
in memory; the sequence length is the config's own. 'scanned' sets model.scan_layers=True (the
layers under one lax.scan: the program, and its compile time, no longer grow with depth).
Writes compile_times_<backend>.{csv,json,md} into --out.
"""
from __future__ import annotations

import glob
import os
import sys

from absl import app, flags

from bench import report, system
from bench.sweep import ROOT, memory_limit, probe, run_case

FLAGS = flags.FLAGS
# Every task config with its variants: 'file:arg' as train.py takes it (configs/<file>.py).
CASES = (
    'enwik8', 'enwik8:size=24x256', 'enwik8:quick',
    'cifar10', 'cifar10:size=12x512', 'cifar10:quick',
    'imagenet:size=tiny', 'imagenet', 'imagenet:quick',
    'lra:task=listops', 'lra:task=text', 'lra:task=retrieval', 'lra:task=image',
    'lra:task=pathfinder', 'lra:task=listops,variant=small', 'lra:task=listops,quick',
)
LAYOUTS = {'looped': False, 'scanned': True}
COLUMNS = ('case', 'layout', 'status', 'batch', 'num_layers', 'dim', 'params', 'batch_shapes',
           'lower_s', 'compile_s', 'run_s', 'first_step_s', 'wall_s', 'error')


def config_path(case: str) -> str:
  name, sep, arg = case.partition(':')
  return f'configs/{name}.py' + (f':{arg}' if sep else '')


def config_files() -> set[str]:
  """The task configs in configs/ (every .py but the shared pieces)."""
  return {os.path.splitext(os.path.basename(p))[0]
          for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))} - {'common', '__init__'}


def shapes(row: dict) -> str:
  return ', '.join(f'{k} {"x".join(map(str, v))}' for k, v in (row.get('batch_shapes') or {}).items())


def seconds(row: dict | None, key: str) -> str:
  if row is None:
    return ''
  if row['status'] != 'ok':
    return row['status'] if key == 'first_step_s' else ''
  return f'{row[key]:.1f}'


def markdown(rows: list[dict], layouts: list[str]) -> str:
  """One line per config: its model and batch, then lower / compile / first step seconds per
  layout."""
  head = ['config', 'model', 'params', 'batch shapes']
  for layout in layouts:
    head += [f'{layout}: lower s', f'{layout}: compile s', f'{layout}: first step s']
  out = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
  for case in dict.fromkeys(r['case'] for r in rows):
    at = {r['layout']: r for r in rows if r['case'] == case}
    info = next((r for r in at.values() if r.get('num_layers')), {})
    cells = [case, f'{info["num_layers"]}L d{info["dim"]}' if info else '',
             f'{info["params"] / 1e6:.1f}M' if info.get('params') else '', shapes(info)]
    for layout in layouts:
      cells += [seconds(at.get(layout), k) for k in ('lower_s', 'compile_s', 'first_step_s')]
    out.append('| ' + ' | '.join(cells) + ' |')
  failed = [r for r in rows if r['status'] != 'ok']
  out += [''] + [f'- {r["case"]} ({r["layout"]}): {r["status"]}: {r.get("error", "")}'
                 for r in failed]
  return '\n'.join(out) + '\n'


def main(argv):
  del argv
  cases = FLAGS.case or list(CASES)
  unknown = [c for c in cases if c.partition(':')[0] not in config_files()]
  if unknown:
    raise app.UsageError(f'no config file for {unknown}; configs: {sorted(config_files())}')
  if set(FLAGS.layouts) - set(LAYOUTS):
    raise app.UsageError(f'--layouts takes {"/".join(LAYOUTS)}, got {FLAGS.layouts}')
  machine = probe(FLAGS.timeout)
  limit = memory_limit(machine['backend'], FLAGS.memory_limit_gb)
  rows = []
  for case in cases:
    for layout in FLAGS.layouts:
      overrides = {'batch_size': FLAGS.batch_size, 'model.scan_layers': LAYOUTS[layout],
                   **({'model.mixer': FLAGS.mixer} if FLAGS.mixer else {})}
      spec = {'kind': 'train', 'compile_only': True, 'config': config_path(case),
              'overrides': overrides, 'memory_limit_bytes': limit}
      rows.append({'case': case, 'layout': layout, **run_case(spec, FLAGS.timeout)})
      r = rows[-1]
      print(f'{case:>32} {layout:<8} {r["status"]:<7} ' + (
          f'lower {r["lower_s"]:.1f} s, compile {r["compile_s"]:.1f} s, first step '
          f'{r["first_step_s"]:.1f} s' if r['status'] == 'ok' else r.get('error', '')),
          flush=True)
  meta = {'command': 'python -m bench.compile_times ' + ' '.join(sys.argv[1:]),
          'machine': machine, 'versions': system.versions(),
          'settings': {'batch_size': FLAGS.batch_size, 'mixer': FLAGS.mixer or "each config's",
                       'timeout': FLAGS.timeout}}
  stem = f'compile_times_{machine["backend"]}'
  paths = report.write_raw(rows, meta, FLAGS.out, stem, COLUMNS)
  paths.append(os.path.join(FLAGS.out, f'{stem}.md'))
  text = '\n'.join([
      report.header(meta),
      f'Batch {FLAGS.batch_size}, mixer: {meta["settings"]["mixer"]}; each case in a fresh '
      'process. lower: tracing to StableHLO; compile: XLA; first step: both plus the first '
      'execution (what a run waits for before its first step).\n', markdown(rows, FLAGS.layouts)])
  with open(paths[-1], 'w') as f:
    f.write(text)
  print('\n' + text)
  print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
  flags.DEFINE_multi_string('case', None, 'A config (its file name in configs/, then :arg as '
                            f'train.py takes it); repeatable. Default: all of {", ".join(CASES)}.')
  flags.DEFINE_integer('batch_size', 1, 'Examples per step (overrides the config\'s).')
  flags.DEFINE_list('layouts', list(LAYOUTS), 'looped and/or scanned (model.scan_layers).')
  flags.DEFINE_string('mixer', None, "A registered mixer for every config (default: each "
                      "config's own).")
  flags.DEFINE_float('timeout', 900, 'Seconds per (config, layout).')
  flags.DEFINE_string('out', 'bench/results/compile', 'Output directory.')
  flags.DEFINE_float('memory_limit_gb', -1, 'Address-space cap per CPU worker in GiB; '
                     '-1: 90% of RAM; 0: none.')
  app.run(main)
