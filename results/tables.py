"""Markdown tables shaped like the AFT paper's (Tables 2, 4 and 5), the paper's numbers beside
ours, made from run directories rather than typed by hand.

  python -m results.tables RUN_DIR... [--out=FILE] [--readme=README.md]

RUN_DIR may be a glob ('runs/*', quoted: only the directories it matches are taken). Ours is
each run's newest eval.py row on the test split (valid where it has no test row) with its
steps, tokens seen, device and commands. --readme replaces the lines between
`<!-- results:begin -->` and `<!-- results:end -->`; --out writes a file; with neither the
tables are printed. Reads JSON only: no JAX.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import sys

from results import paper

BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'
NONE = '—'


@dataclasses.dataclass(frozen=True)
class Run:
  """One workdir's newest result and what it took to get there."""
  workdir: str
  task: str
  data: str
  mixer: str
  window: int | None  # aft_local's window; None for every other mixer
  layers: int
  dim: int
  tokens_per_example: int
  split: str
  bits: float
  step: int
  tokens: int
  device: str
  commands: tuple[str, ...]  # train.py's, then eval.py's, as far as they were recorded

  @property
  def key(self) -> tuple:
    return self.mixer, self.window, self.layers, self.dim


def _json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def _jsonl(path: str) -> list[dict]:
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  rows = []
  for i, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} line {i} is not JSON ({e})') from None
  return rows


def _newest_result(rows: list[dict]) -> dict | None:
  for split in ('test', 'valid'):
    found = [r for r in rows if r.get('split') == split]
    if found:
      return found[-1]  # rows are appended, so the last is the newest
  return None


def _bits(row: dict) -> float | None:
  """'bits', or '<evaluator>/bits' when the run's config had several evaluators."""
  keys = ['bits'] + sorted(k for k in row if k.endswith('/bits'))
  return next((row[k] for k in keys if k in row), None)


def _tokens_per_example(data: dict) -> int:
  return math.prod(data['image_shape']) if 'image_shape' in data else data['seq_len']


def _device(row: dict, facts: dict) -> str:
  """eval.py's device where its row has one, else train.py's (run.json)."""
  source = row if 'device' in row else facts
  device, count = source.get('device', 'device not recorded'), source.get('device_count', 1)
  return f'{count}x {device}' if count > 1 else device


def _no_result(workdir: str) -> str:
  """Why a run is not in the tables, with how far it trained (so one knows to run eval.py)."""
  steps = [r['step'] for r in _jsonl(os.path.join(workdir, 'metrics.jsonl'))
           if r.get('split') == 'train']
  return 'no eval.py result' + (f' (trained to step {max(steps):,})' if steps else '')


def load(workdir: str) -> Run | str:
  """The workdir's run, or why it has no place in the tables."""
  config = _json(os.path.join(workdir, 'config.json'))
  if config is None:
    return 'no config.json'
  if config['task'] not in {t.task for t in paper.TABLES}:
    return f'task {config["task"]!r} is in no paper table'
  row = _newest_result(_jsonl(os.path.join(workdir, 'results.jsonl')))
  if row is None:
    return _no_result(workdir)
  if _bits(row) is None:
    return f'its eval.py result ({row["split"]}, step {row["step"]}) has no bits'
  facts = _json(os.path.join(workdir, 'run.json')) or {}
  model, data = config['model'], config['data']
  per_example = _tokens_per_example(data)
  window = (model.get('mixer_options', {}).get('aft_local', {}).get('window')
            if model['mixer'] == 'aft_local' else None)
  return Run(workdir=workdir, task=config['task'], data=data['name'], mixer=model['mixer'],
             window=window, layers=model['num_layers'], dim=model['dim'],
             tokens_per_example=per_example, split=row['split'], bits=_bits(row),
             step=row['step'], tokens=row['step'] * config['batch_size'] * per_example,
             device=_device(row, facts),
             # dict.fromkeys: a result of the training run itself names its command once
             commands=tuple(dict.fromkeys(c for c in (facts.get('command'), row.get('command'))
                                          if c)))


def _count(n: int) -> str:
  for size, suffix in ((1e9, 'B'), (1e6, 'M'), (1e3, 'K')):
    if n >= size:
      return f'{n / size:.3g}{suffix}'
  return str(n)


def _marks(run: Run, table: paper.Table) -> list[str]:
  """How the run differs from the paper's setup; an unmarked run is comparable."""
  differences = [
      (run.tokens < table.tokens, 'short run'),
      (run.data != table.data, f'other data: {run.data}'),
      (run.tokens_per_example != table.tokens_per_example, f'T={run.tokens_per_example:,}'),
      ((run.layers, run.dim) not in table.sizes, 'other size'),
      (run.split != 'test', f'{run.split} split')]
  return [mark for differs, mark in differences if differs]


def _cell(run: Run, table: paper.Table, note: int) -> str:
  facts = f'{run.step:,} steps, {_count(run.tokens)} tokens, {run.device}'
  return f'{run.bits:.3f} ({"; ".join(_marks(run, table) + [facts])}) [{note}]'


def _rows(table: paper.Table, runs: list[Run]) -> list[tuple[tuple, paper.Row | None, list[Run]]]:
  """(key, paper row, our runs): the paper's rows in its order, then ours it has no row for."""
  ours: dict[tuple, list[Run]] = {}
  for run in runs:
    ours.setdefault(run.key, []).append(run)
  rows = [(r.key, r, ours.pop(r.key, [])) for r in table.rows]
  extra = sorted(ours, key=lambda k: (k[0], -1 if k[1] is None else k[1], k[2], k[3]))
  return rows + [(k, None, ours[k]) for k in extra]


def _number(value: float | None, decimals: int) -> str:
  return NONE if value is None else f'{value:.{decimals}f}'


def _table(table: paper.Table, rows: list, notes: dict[str, int]) -> str:
  unit, train = table.unit, any(r.train is not None for r in table.rows)
  head = [table.label_header, 'L', 'd', f'paper test {unit}',
          *([f'paper train {unit}'] if train else []), f'ours, test {unit}']
  lines = [f'### {table.name}: {table.title}, test {unit}', '',
           f'Paper ({table.name}): {table.data}, batch {table.batch_size}, {table.epochs} epochs '
           f'= {table.steps:,} steps of {table.tokens_per_example:,} tokens per example, '
           f'{_count(table.tokens)} tokens.', '',
           '| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
  for (mixer, window, layers, dim), row, ours in rows:
    theirs = [_number(row and row.test, table.decimals)]
    theirs += [_number(row and row.train, table.decimals)] if train else []
    cell = '<br>'.join(_cell(r, table, notes[r.workdir]) for r in ours) or NONE
    lines.append(f'| {table.label(mixer, window)} | {layers} | {dim} | '
                 + ' | '.join(theirs) + f' | {cell} |')
  lines.append('')
  for run in sorted({r for *_, ours in rows for r in ours}, key=lambda r: notes[r.workdir]):
    commands = ' then '.join(f'`{c}`' for c in run.commands) or 'commands not recorded'
    lines.append(f'- [{notes[run.workdir]}] `{run.workdir}`: {commands}')
  return '\n'.join(lines)


def build(workdirs: list[str]) -> str:
  """The Markdown: one table per paper table that holds at least one of the runs, then the
  workdirs that are in none (no eval.py result, ...)."""
  loaded = {w: load(w) for w in workdirs}
  runs = [r for r in loaded.values() if isinstance(r, Run)]
  notes: dict[str, int] = {}  # workdir -> its number, in the order the tables show the runs
  parts = [f'Made by `python -m results.tables` from {len(loaded)} run directories. Paper: '
           f'{paper.SOURCE}. Ours: each run\'s newest `eval.py` result on the test split (valid '
           f'where it has none), with its steps, tokens seen (steps x batch x tokens per '
           f'example) and device; [n] gives its commands. A cell is marked where the run is '
           f'short of the paper\'s token budget or differs from its setup (data, T, model '
           f'size); the paper\'s columns hold only the paper\'s numbers.']
  for table in paper.TABLES:
    members = [r for r in runs if r.task == table.task
               and (table.mixers is None or r.mixer in table.mixers)]
    if members:
      rows = _rows(table, members)
      for *_, ours in rows:
        notes.update((r.workdir, len(notes) + 1) for r in ours if r.workdir not in notes)
      parts.append(_table(table, rows, notes))
  left_out = [f'- `{w}`: {why}' for w, why in loaded.items() if isinstance(why, str)]
  parts += ['Not in the tables:\n\n' + '\n'.join(left_out)] if left_out else []
  return '\n\n'.join(parts) + '\n'


def replace_region(text: str, tables: str, path: str) -> str:
  """`text` with the lines between the begin and end markers replaced by `tables`; the
  markers and everything outside them are kept byte for byte."""
  lines = text.splitlines(keepends=True)
  stripped = [line.strip() for line in lines]
  begin = stripped.index(BEGIN) if BEGIN in stripped else None
  if begin is None or END not in stripped[begin:]:
    raise ValueError(f'{path} has no "{BEGIN}" line followed by an "{END}" line; put the two '
                     f'where the tables belong')
  end = stripped.index(END, begin)
  return ''.join(lines[:begin + 1]) + '\n' + tables + '\n' + ''.join(lines[end:])


def write_readme(path: str, tables: str) -> None:
  with open(path, encoding='utf-8', newline='') as f:  # newline='': line endings kept
    text = replace_region(f.read(), tables, path)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text)


def run_dirs(patterns: list[str]) -> list[str]:
  """Directories matching each path or glob, in order, each once; a pattern matching none is
  an error."""
  found = []
  for pattern in patterns:
    matches = sorted(d for d in glob.glob(pattern) if os.path.isdir(d))
    if not matches:
      raise FileNotFoundError(f'no run directory matches {pattern!r}')
    found += matches
  return list(dict.fromkeys(found))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m results.tables', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR', help='workdir or glob')
  parser.add_argument('--out', help='write the Markdown to this file')
  parser.add_argument('--readme', help='replace the marked region of this file (README.md)')
  args = parser.parse_args(argv)
  try:
    tables = build(run_dirs(args.run_dirs))
    if args.readme:
      write_readme(args.readme, tables)
    if args.out:
      with open(args.out, 'w') as f:
        f.write(tables)
  except (OSError, ValueError) as e:
    print(f'ERROR: {e}', file=sys.stderr)
    return 2
  written = [p for p in (args.readme, args.out) if p]
  print('\n'.join(f'wrote {p}' for p in written) if written else tables.rstrip('\n'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
