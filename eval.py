"""Evaluates the newest readable checkpoint of a run: the config's evaluators on a split.

  python eval.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/x --split=test
  python eval.py --config=configs/cifar10.py:mixer=aft_local --workdir=runs/c --sample=16

The workdir is opened read-only (a damaged checkpoint is reported and skipped, never
moved); the result is printed, then appended as one JSON row to <workdir>/results.jsonl.
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import evaluators
from evaluators import samples
from trainlib import workdir as workdir_lib
from trainlib.cli import parse_flags
from trainlib.checkpoints import CheckpointMismatch, Checkpoints
from trainlib.metrics import fmt, run_facts, write_image_grid
from trainlib.run import Run

FLAGS = flags.FLAGS


def restore(config, workdir: str):
  """(run, step, state) of the newest readable checkpoint in workdir."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoints in {directory}; train first with train.py '
                            f'--workdir={workdir}')
  run = Run(config, steps=1)  # the optimizer's shape does not depend on the schedule length
  workdir_lib.check_same_model(workdir, config, workdir_lib.recorded_config(workdir))
  ckpt = Checkpoints(directory, read_only=True)
  try:
    restored = ckpt.restore(run.state)
  except CheckpointMismatch as e:
    raise workdir_lib.mismatch(e, workdir, config) from None
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f'no readable checkpoint in {directory}; train first with '
                            f'train.py --workdir={workdir}')
  step, state, _ = restored
  return run, step, state


def evaluate_checkpoint(config, workdir: str, split: str = 'valid') -> dict:
  """Runs every evaluator of config.evals that reads a split on `split`; returns the row
  (values keyed by name, or '<evaluator>/<name>' when the config has several)."""
  run, step, state = restore(config, workdir)
  evals = evaluators.build_all(config, run.task, run, split=split)
  if not evals:
    raise ValueError(f'config.evals has no evaluator that reads a split ({list(config.evals)})')
  t = time.perf_counter()
  row = {'step': int(step), 'split': split, 'task': config.task, 'unit': run.task.unit,
         'mixer': config.model.mixer, 'data': config.data.name}
  for name, (ev, _) in evals.items():
    for key, value in ev.run(state, final=True):
      row[key if len(evals) == 1 else f'{name}/{key}'] = value
  row['seconds'] = round(time.perf_counter() - t, 2)
  row.update({k: v for k, v in run_facts().items() if k in ('command', 'device', 'device_count')})
  print(f'{split} at step {step}: ' + '  '.join(
      f'{row["unit"] if k == "bits" else k} {fmt(v)}' for k, v in row.items()
      if isinstance(v, float) and k != 'seconds'), flush=True)
  if jax.process_index() == 0:
    path = os.path.join(workdir, 'results.jsonl')
    try:
      with open(path, 'a') as f:
        f.write(json.dumps(row) + '\n')
    except OSError as e:  # the number is printed above; only the row is lost
      print(f'WARNING: could not append the row to {path} ({e})', flush=True)
  return row


def draw_samples(config, workdir: str, num: int, seed: int) -> str:
  """num samples from the newest checkpoint through the config's samples evaluator options."""
  run, step, state = restore(config, workdir)
  options = next((dict(c) for c in config.evals.values() if c.get('type') == 'samples'), {})
  ev = samples.Evaluator(run.task, run, num=num, seed=seed,
                         temperature=options.get('temperature', 1.0))
  (_, value), = ev.run(state)
  if isinstance(value, str):
    return value
  return f'{num} samples at step {step}: ' + write_image_grid(value, workdir, 'samples', step)


def cli(config, workdir: str, split: str, sample: int = 0, seed: int = 0) -> int:
  """The command line's work and exit status: 2 with one ERROR line for a config or input
  error (a mismatched config, no checkpoint); a traceback only for a project bug."""
  try:
    if sample:
      print(draw_samples(config, workdir, sample, seed))
    else:
      print(json.dumps(evaluate_checkpoint(config, workdir, split)))
  except (ValueError, FileNotFoundError) as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    return 2
  return 0


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sys.exit(cli(FLAGS.config, FLAGS.workdir, FLAGS.split, FLAGS.sample, FLAGS.seed))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, "The run's config file.", lock_config=True)
  flags.DEFINE_string('workdir', None, 'The run directory.')
  flags.DEFINE_enum('split', 'valid', ['valid', 'validation', 'test'], 'Split to evaluate.')
  flags.DEFINE_integer('sample', 0, 'Instead of evaluating, draw this many samples (images: a '
                       'PNG grid in workdir).')
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=parse_flags)
