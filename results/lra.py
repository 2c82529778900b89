"""The Long Range Arena table and chart: tasks as columns, mixers as rows, the published numbers
beside ours; the survey's chart (accuracy against training steps/s, bubble area = peak memory).

  python -m results.lra RESULTS... --out=DIR

RESULTS are run directories (globs allowed, quoted) of configs/lra.py runs, or JSONL files of
rows {task, mixer, protocol, accuracy, split, step, steps_per_s, peak_memory_bytes, device,
command}. A run's accuracy is its newest eval.py row (results.jsonl; test split first), else
its last validation row (metrics.jsonl, marked 'valid'); its speed the last logged training
steps/s; its peak memory from memory.json (python -m results.lra_memory RUN_DIR...). Writes
DIR/lra.md (one table per protocol: the LRA paper's, and the later 2-layer width-64 re-runs')
and DIR/lra_chart.png. The average leaves out Path-X (as LRA's does) and needs all five tasks.
Reads JSON only: no JAX.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import math
import os
import sys

from results.tables import _device, _json, _jsonl

TASKS = ('listops', 'text', 'retrieval', 'image', 'pathfinder')
TITLES = {'listops': 'ListOps', 'text': 'Text', 'retrieval': 'Retrieval', 'image': 'Image',
          'pathfinder': 'Pathfinder'}
NONE = '—'

# Published accuracy (%), per protocol: name -> (our mixer or None, scores in TASKS order).
LRA_SOURCE = ('Tay et al. 2021, Long Range Arena, ICLR (arXiv:2011.04006), Table 1; Avg is the '
              "mean of the five scores (Sinkhorn's as printed: 51.39, repo README 51.29)")
LRA_PAPER = {
    'Transformer': ('softmax', (36.37, 64.27, 57.46, 42.44, 71.40)),
    'Local Attention': ('local', (15.82, 52.98, 53.39, 41.46, 66.63)),
    'Sparse Trans.': ('strided', (17.07, 63.58, 59.59, 44.24, 71.71)),
    'Longformer': ('longformer', (35.63, 62.85, 56.89, 42.22, 69.71)),
    'Linformer': ('linformer', (35.70, 53.94, 52.27, 38.56, 76.34)),
    'Reformer': ('lsh', (37.27, 56.10, 53.40, 38.07, 68.50)),
    'Sinkhorn Trans.': ('sinkhorn', (33.67, 61.20, 53.83, 41.23, 67.45)),
    'Synthesizer': ('synthesizer', (36.99, 61.68, 54.67, 41.61, 69.45)),
    'BigBird': ('bigbird', (36.05, 64.02, 59.29, 40.83, 74.87)),
    'Linear Trans.': ('linear', (16.13, 65.90, 53.09, 42.34, 75.30)),
    'Performer': ('performer', (18.01, 65.40, 53.82, 42.77, 77.05)),
}
SMALL_SOURCE = ('Chen et al. 2021, Skyformer, NeurIPS, Table 1 (2 layers, width 64, hidden 128, '
                '2 heads, mean pooling, 50k steps)')
SMALL_PAPER = {
    'Transformer': ('softmax', (38.37, 61.95, 80.69, 40.57, 65.26)),
    'Performer': ('performer', (38.02, 64.19, 80.04, 41.43, 66.30)),
    'Reformer': ('lsh', (37.68, 62.93, 78.99, 48.87, 66.49)),
    'BigBird': ('bigbird', (39.25, 63.86, 80.28, 43.16, 68.72)),
    'Linformer': ('linformer', (37.45, 58.93, 78.19, 37.96, 60.93)),
}
# The LRA paper's Table 2 (Text, length 4K, batch 32, 4x4 TPU v3): steps/s, GB per device.
LRA_SPEED_4K = {'Transformer': (1.4, 9.48), 'Local Attention': (7.4, 1.37),
                'Linformer': (7.7, 0.99), 'Reformer': (1.1, 2.28),
                'Sinkhorn Trans.': (5.3, 1.48), 'Synthesizer': (1.9, 6.99),
                'BigBird': (1.5, 2.88), 'Linear Trans.': (7.8, 1.03), 'Performer': (8.0, 1.06)}
PROTOCOLS = {'lra': ('The LRA protocol (paper and released configs)', LRA_PAPER, LRA_SOURCE),
             'small': ('The 2-layer, width-64 protocol of the later re-runs', SMALL_PAPER,
                       SMALL_SOURCE),
             'quick': ('Generated ListOps (the quick config: 8-64 tokens, depth <= 4; no '
                       'published numbers, not comparable to LRA)', {}, '')}
VARIANT_PROTOCOL = {'paper': 'lra', 'released': 'lra', 'small': 'small', 'quick': 'quick'}


@dataclasses.dataclass(frozen=True)
class Result:
  task: str
  mixer: str
  protocol: str  # 'lra', 'small' or 'quick' (generated ListOps, not comparable)
  accuracy: float  # percent
  split: str
  step: int
  steps_per_s: float | None
  peak_memory_bytes: int | None
  device: str
  command: str  # the training command, then eval.py's, as far as they were recorded
  source: str  # the run directory or results file


def _accuracy(row: dict) -> float | None:
  keys = ['top1'] + sorted(k for k in row if k.endswith('/top1'))
  return next((row[k] for k in keys if k in row), None)


def load_run(workdir: str) -> Result | str:
  """A configs/lra.py run's result, or why it has none."""
  config = _json(os.path.join(workdir, 'config.json'))
  if config is None:
    return 'no config.json'
  if config.get('task') != 'lra':
    return f'task {config.get("task")!r} is not lra'
  rows = _jsonl(os.path.join(workdir, 'results.jsonl'))
  row = next((r for split in ('test', 'valid') for r in reversed(rows)
              if r.get('split') == split and _accuracy(r) is not None), None)
  metrics = _jsonl(os.path.join(workdir, 'metrics.jsonl'))
  if row is None:  # no eval.py result: the training run's last validation
    row = next((r for r in reversed(metrics) if r.get('split') == 'valid'
                and _accuracy(r) is not None), None)
  if row is None:
    return 'no accuracy recorded (run eval.py --split=test)'
  speed = next((r['steps_per_s'] for r in reversed(metrics)
                if r.get('split') == 'train' and 'steps_per_s' in r), None)
  facts = _json(os.path.join(workdir, 'run.json')) or {}
  memory = (_json(os.path.join(workdir, 'memory.json')) or {}).get('peak_bytes')
  variant = config.get('variant', 'paper')
  return Result(task=config['data']['name'], mixer=config['model']['mixer'],
                protocol=VARIANT_PROTOCOL.get(variant, variant),
                accuracy=100 * _accuracy(row), split=row['split'], step=row['step'],
                steps_per_s=speed, peak_memory_bytes=memory, device=_device(row, facts),
                # dict.fromkeys: a result of the training run itself names its command once
                command=' ; '.join(dict.fromkeys(c for c in (facts.get('command'),
                                                             row.get('command')) if c)),
                source=workdir)


def load_file(path: str) -> list[Result]:
  out = []
  for i, r in enumerate(_jsonl(path), 1):
    missing = {'task', 'mixer', 'accuracy'} - set(r)
    if missing:
      raise ValueError(f'{path} line {i}: missing {sorted(missing)}')
    if r['task'] not in TASKS:
      raise ValueError(f'{path} line {i}: task must be one of {TASKS}, got {r["task"]!r}')
    out.append(Result(task=r['task'], mixer=r['mixer'], protocol=r.get('protocol', 'lra'),
                      accuracy=float(r['accuracy']), split=r.get('split', 'test'),
                      step=int(r.get('step', 0)), steps_per_s=r.get('steps_per_s'),
                      peak_memory_bytes=r.get('peak_memory_bytes'),
                      device=r.get('device', 'device not recorded'),
                      command=r.get('command', ''), source=f'{path}:{i}'))
  return out


def collect(patterns: list[str]) -> tuple[list[Result], list[str]]:
  """(results, 'path: why skipped' lines); a pattern matching nothing is an error."""
  results, skipped = [], []
  for pattern in patterns:
    matches = sorted(glob.glob(pattern))
    if not matches:
      raise FileNotFoundError(f'nothing matches {pattern!r}')
    for path in matches:
      if os.path.isdir(path):
        got = load_run(path)
        if isinstance(got, str):
          skipped.append(f'{path}: {got}')
        else:
          results.append(got)
      else:
        results.extend(load_file(path))
  return results, skipped


def _fmt(x: float | None) -> str:
  return NONE if x is None else f'{x:.2f}'


def average(scores) -> float | None:
  """The mean over the five tasks; None unless all five are there."""
  scores = list(scores)
  return None if any(s is None for s in scores) else sum(scores) / len(scores)


def newest(results: list[Result]) -> dict[tuple[str, str], Result]:
  """(mixer, task) -> the result with the most steps (the last given among equals)."""
  best: dict[tuple[str, str], Result] = {}
  for r in results:
    key = (r.mixer, r.task)
    if key not in best or r.step >= best[key].step:
      best[key] = r
  return best


def table(protocol: str, results: list[Result]) -> str:
  title, published, source = PROTOCOLS.get(protocol, (f'Protocol {protocol!r}', {}, ''))
  header = ['Model', *(TITLES[t] for t in TASKS), 'Avg']
  lines = [f'### {title}', '', '| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  for name, (_, scores) in published.items():
    cells = [_fmt(s) for s in scores] + [_fmt(average(scores))]
    lines.append(f'| {name} (published) | ' + ' | '.join(cells) + ' |')
  ours = newest([r for r in results if r.protocol == protocol])
  notes: list[str] = []
  for mixer in sorted({m for m, _ in ours}):
    cells = []
    for task in TASKS:
      r = ours.get((mixer, task))
      if r is None:
        cells.append(NONE)
        continue
      notes.append(f'[{len(notes) + 1}] {mixer}, {task}: {r.split} accuracy at step '
                   f'{r.step:,} on {r.device}'
                   + (f', {r.steps_per_s:.2f} steps/s' if r.steps_per_s else '')
                   + (f'; `{r.command}`' if r.command else '') + f' ({r.source})')
      cells.append(f'{r.accuracy:.2f} [{len(notes)}]'
                   + ('' if r.split == 'test' else f' ({r.split})'))
    avg = average(ours[(mixer, t)].accuracy if (mixer, t) in ours else None for t in TASKS)
    lines.append(f'| `{mixer}` (ours) | ' + ' | '.join(cells) + f' | {_fmt(avg)} |')
  if source:
    lines += ['', f'Published: {source}.']
  return '\n'.join(lines + ([''] + notes if notes else []))


def chart_points(results: list[Result]) -> list[dict]:
  """Per (protocol, mixer): accuracy averaged over its tasks, steps/s (geometric mean over
  its runs), peak memory (the largest of its runs), and the tasks it covers."""
  groups = collections.defaultdict(list)
  for r in newest_per_protocol(results):
    groups[(r.protocol, r.mixer)].append(r)
  points = []
  for (protocol, mixer), rs in sorted(groups.items()):
    speeds = [r.steps_per_s for r in rs if r.steps_per_s]
    memory = [r.peak_memory_bytes for r in rs if r.peak_memory_bytes]
    points.append(dict(
        protocol=protocol, mixer=mixer, tasks=sorted(r.task for r in rs),
        accuracy=sum(r.accuracy for r in rs) / len(rs),
        steps_per_s=math.exp(sum(map(math.log, speeds)) / len(speeds)) if speeds else None,
        peak_memory_gb=max(memory) / 2 ** 30 if memory else None))
  return points


def newest_per_protocol(results: list[Result]) -> list[Result]:
  out = []
  for protocol in sorted({r.protocol for r in results}):
    out += newest([r for r in results if r.protocol == protocol]).values()
  return out


def chart(results: list[Result], path: str) -> str:
  """Left: the LRA paper (Table 1 average against Table 2's Text-4K steps/s, area = memory).
  Right: ours (mean accuracy over the tasks run against steps/s, area = peak memory)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
  for name, (speed, gb) in LRA_SPEED_4K.items():
    avg = average(LRA_PAPER[name][1])
    left.scatter(speed, avg, s=120 * gb, alpha=0.5)
    left.annotate(name, (speed, avg), fontsize=8, ha='center', va='bottom')
  left.set(title='LRA paper: Table 1 avg vs Table 2 (Text 4K, TPU v3)\n'
                 'area = memory per device (largest 9.48 GB)',
           xlabel='training steps/s', ylabel='LRA score (avg accuracy %)')
  points = [p for p in chart_points(results) if p['steps_per_s']]
  largest = max([p['peak_memory_gb'] or 0 for p in points] + [1e-9])
  scale = 120 * 9.48 / largest  # our largest bubble as big as the paper's largest
  for p in points:
    size = scale * p['peak_memory_gb'] if p['peak_memory_gb'] else 30
    right.scatter(p['steps_per_s'], p['accuracy'], s=size, alpha=0.5,
                  marker='o' if p['peak_memory_gb'] else 'x')
    right.annotate(f'{p["mixer"]} ({p["protocol"]}, {len(p["tasks"])} task'
                   f'{"s" if len(p["tasks"]) > 1 else ""})', (p['steps_per_s'], p['accuracy']),
                   fontsize=8, ha='center', va='bottom')
  right.set(title=f'Ours: area = peak memory of the train step (largest '
                  f'{largest * 1024:.0f} MiB; x: not measured)', xlabel='training steps/s',
            ylabel='accuracy % (mean over the tasks run)')
  for ax in (left, right):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def build(results: list[Result], skipped: list[str]) -> str:
  protocols = ['lra', 'small'] + sorted({r.protocol for r in results} - {'lra', 'small'})
  parts = ['## Long Range Arena (accuracy %)', '']
  for p in protocols:
    parts += [table(p, results), '']
  if skipped:
    parts += ['Not in the tables: ' + '; '.join(skipped), '']
  return '\n'.join(parts)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m results.lra', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('results', nargs='+', metavar='RESULTS',
                      help='run directory, results JSONL file, or glob')
  parser.add_argument('--out', required=True, help='folder for lra.md and lra_chart.png')
  args = parser.parse_args(argv)
  try:
    results, skipped = collect(args.results)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  os.makedirs(args.out, exist_ok=True)
  md = os.path.join(args.out, 'lra.md')
  with open(md, 'w') as f:
    f.write(build(results, skipped))
  png = chart(results, os.path.join(args.out, 'lra_chart.png'))
  print(f'{len(results)} results ({len(skipped)} runs skipped): {md}, {png}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
