"""The mini reproduction: every causal mixer (or AFT-local at several windows) trained on the
same bytes for the same token budget with the same small model, then one table and one plot.

  python -m results.sweep [--out=runs/mini] [--mixers=softmax,aft_local] [--steps=400]
  python -m results.sweep --windows=0,1,2,4,8,32,64,128 --out=runs/windows   # Table 5
  # any config, any field: --config=configs/enwik8.py:quick --set=data.name=text --set=data.path=F

Each case is `python train.py` in its own process and workdir (out/<case>), so an
interrupted sweep continues where it stopped (finished cases are skipped, a half-done one
resumes from its checkpoint). Writes out/table.md (validation bits/char over the whole
split, training tokens/s, peak resident memory of the process, parameters, wall time,
and the AFT paper's Enwik8 test bits/char with both rankings) and out/curves.png (the
validation learning curves).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from results import paper

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def causal_mixers() -> list[str]:
  import mixers  # here, not at import: the table code needs no JAX
  return [n for n in mixers.names() if 'causal' not in _refusals(n)]


def _refusals(name: str) -> str:
  """'causal' when the mixer has no causal form (it refuses to build as one)."""
  import mixers
  from flax import nnx
  try:
    mixers.build(name, dim=8, num_heads=2, max_len=8, causal=True, rngs=nnx.Rngs(0))
  except ValueError as e:
    return 'causal' if 'causal' in str(e) else ''
  return ''


def cases() -> list[tuple[str, dict]]:
  """(case name, config overrides) for each run of the sweep."""
  if FLAGS.windows:
    return [(f'aft_local_w{w}', {'model.mixer': 'aft_local',
                                 'model.mixer_options.aft_local.window': int(w)})
            for w in FLAGS.windows]
  return [(m, {'model.mixer': m}) for m in (FLAGS.mixers or causal_mixers())]


def command(workdir: str, overrides: dict) -> list[str]:
  every = max(FLAGS.steps // FLAGS.curve_points, 1)
  base = {'num_steps': FLAGS.steps, 'checkpoint_every': every, 'evals.valid.every': every,
          **dict(s.split('=', 1) for s in FLAGS.set), **overrides}
  return [sys.executable, 'train.py', f'--config={FLAGS.config}', f'--workdir={workdir}',
          *(f'--config.{k}={v}' for k, v in base.items())]


def run_case(name: str, overrides: dict) -> dict:
  """Trains one case (skipped when its record exists); returns its record."""
  workdir = os.path.join(FLAGS.out, name)
  record_path = os.path.join(workdir, 'sweep.json')
  if os.path.exists(record_path):
    print(f'{name}: done before, skipped', flush=True)
    return json.load(open(record_path))
  cmd = command(workdir, overrides)
  print(f'{name}: {shlex.join(cmd[1:])}', flush=True)
  t = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  for line in proc.stdout:  # the run's progress lines, indented
    print('    ' + line, end='', flush=True)
  _, status, usage = os.wait4(proc.pid, 0)
  record = {'case': name, 'command': shlex.join(['python', *cmd[1:]]),
            'returncode': os.waitstatus_to_exitcode(status),
            'wall_s': round(time.perf_counter() - t, 1),
            'peak_rss_mb': round(usage.ru_maxrss / 1024, 1)}  # Linux: kilobytes
  if record['returncode'] == 0:
    result_row(workdir, record['command'])
    with open(record_path, 'w') as f:
      json.dump(record, f, indent=2)
  return record


def result_row(workdir: str, command: str) -> None:
  """Appends the run's final evaluation (the whole validation split) to its results.jsonl, as
  eval.py would, so results.tables places the case beside the paper's rows."""
  config = json.load(open(os.path.join(workdir, 'config.json')))
  run = json.load(open(os.path.join(workdir, 'run.json')))
  final = max(_rows(workdir, 'valid'), key=lambda r: r['step'])
  row = {'step': final['step'], 'split': 'valid', 'task': config['task'], 'unit': 'bits/char',
         'mixer': config['model']['mixer'], 'data': config['data']['name'],
         'loss': final['loss'], 'bits': final['bits'], 'tokens': final['tokens'],
         'device': run['device'], 'command': command}
  with open(os.path.join(workdir, 'results.jsonl'), 'a') as f:
    f.write(json.dumps(row) + '\n')


def _rows(workdir: str, split: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  return [r for r in map(json.loads, open(path)) if r['split'] == split]


def summary(record: dict) -> dict:
  """The table's figures for one case, read from its workdir."""
  workdir = os.path.join(FLAGS.out, record['case'])
  out = dict(record)
  if record['returncode'] != 0:
    return out
  config = json.load(open(os.path.join(workdir, 'config.json')))
  run = json.load(open(os.path.join(workdir, 'run.json')))
  valid = max(_rows(workdir, 'valid'), key=lambda r: r['step'])
  rates = [r['steps_per_s'] for r in _rows(workdir, 'train') if 'steps_per_s' in r]
  tokens_per_step = config['batch_size'] * config['data']['seq_len']
  out.update(bits=valid['bits'], step=valid['step'], parameters=run.get('parameters'),
             device=run.get('device'), tokens=valid['step'] * tokens_per_step,
             tokens_per_s=rates[-1] * tokens_per_step if rates else None,
             mixer=config['model']['mixer'],
             window=config['model']['mixer_options']['aft_local']['window'])
  return out


def _rank(values: dict) -> dict:
  order = sorted((v, k) for k, v in values.items() if v is not None)
  return {k: i + 1 for i, (_, k) in enumerate(order)}


def table(rows: list[dict]) -> str:
  ok = [r for r in rows if r['returncode'] == 0]
  ours = _rank({r['case']: r['bits'] for r in ok})
  reference = {r['case']: paper_value(r) for r in ok}
  theirs = _rank(reference)
  lines = ['| case | valid bits/char | rank | paper test bpc | paper rank | train tokens/s | '
           'peak memory | parameters | wall |', '|---' * 9 + '|']
  for r in rows:
    if r['returncode'] != 0:
      lines.append(f'| {r["case"]} | failed (exit {r["returncode"]}) | | | | | | | |')
      continue
    ref = reference[r['case']]
    lines.append(
        f'| {r["case"]} | {r["bits"]:.3f} | {ours[r["case"]]} | '
        f'{_fmt(ref, ".3f")} | {theirs.get(r["case"], "—")} | '
        f'{_fmt(r["tokens_per_s"], ",.0f")} | {r["peak_rss_mb"]:,.0f} MB | {r["parameters"]:,} | '
        f'{r["wall_s"]:.0f} s |')
  first = ok[0] if ok else {}
  head = (f'Every case: {first.get("step")} steps, {first.get("tokens", 0):,} training tokens, '
          f'device {first.get("device")}. Validation bits/char over the whole validation split; '
          f'tokens/s leaves out compilation and evaluation; peak memory is the process\'s '
          f'resident set. Paper: {paper.SOURCE}, Enwik8 test bits/char at full scale (ranks '
          f'among the cases that have one).\n\nCommand of a case: `{first.get("command")}`\n')
  return head + '\n' + '\n'.join(lines) + '\n'


def _fmt(value, spec: str) -> str:
  return '—' if value is None else format(value, spec)


def paper_value(row: dict) -> float | None:
  if FLAGS.windows:
    return paper.window_test_bpc(row['window'])
  return paper.enwik8_test_bpc(row['mixer'])


def plot(rows: list[dict], path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8, 5))
  cmap = plt.get_cmap('tab20')
  for i, r in enumerate(r for r in rows if r['returncode'] == 0):
    points = sorted((v['step'], v['bits']) for v in _rows(os.path.join(FLAGS.out, r['case']),
                                                          'valid'))
    ax.plot(*zip(*points), label=r['case'], color=cmap(i % 20),
            linestyle='-' if i < 20 else '--')
  ax.set_xlabel('training step')
  ax.set_ylabel('validation bits/char')
  ax.legend(fontsize=7, ncol=2)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  rows = [summary(run_case(name, overrides)) for name, overrides in cases()]
  text = table(rows)
  with open(os.path.join(FLAGS.out, 'table.md'), 'w') as f:
    f.write(text)
  plot(rows, os.path.join(FLAGS.out, 'curves.png'))
  print('\n' + text + f'\nwrote {FLAGS.out}/table.md and {FLAGS.out}/curves.png')


if __name__ == '__main__':
  flags.DEFINE_string('config', 'configs/enwik8.py:quick', 'The config every case trains.')
  flags.DEFINE_list('mixers', None, 'Mixers to train (default: every causal one).')
  flags.DEFINE_list('windows', None, 'Instead of mixers: AFT-local at these windows (0 is '
                    'AFT-simple), the AFT paper\'s Table 5.')
  flags.DEFINE_integer('steps', 400, 'Training steps of every case (the same token budget).')
  flags.DEFINE_integer('curve_points', 8, 'Validation evaluations per case (the curves).')
  flags.DEFINE_multi_string('set', [], 'key=value config overrides for every case, e.g. '
                            '--set=data.name=text --set=data.path=/path/to/file.')
  flags.DEFINE_string('out', 'runs/mini', 'Directory of the cases\' workdirs and the results.')
  app.run(main)
