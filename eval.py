"""Evaluates the newest readable checkpoint of a run on a split; prints and records bits/token.

  python eval.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/x --split=test
  python eval.py --config=configs/cifar10.py:mixer=aft_local --workdir=runs/c --sample=16

Appends one JSON row to <workdir>/results.jsonl, beside the checkpoints.
"""
from __future__ import annotations

import json
import os
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from trainlib import mesh as mesh_lib
from trainlib import sampling
from trainlib import state as state_lib
from trainlib import task
from trainlib.checkpoints import Checkpoints

FLAGS = flags.FLAGS


def restore(config, workdir: str):
  """(mesh, graphdef, step, state) of the newest readable checkpoint in workdir."""
  mesh = mesh_lib.make_mesh(config.mesh)
  graphdef, state, _, _ = state_lib.create(config, mesh, total_steps=1)
  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints)
  restored = ckpt.restore(state)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f'no readable checkpoint in {ckpt.directory}; train first with '
                            f'train.py --workdir={workdir}')
  step, state, _ = restored
  return mesh, graphdef, step, state


def evaluate_checkpoint(config, workdir: str, split: str = 'valid') -> dict:
  mesh, graphdef, step, state = restore(config, workdir)
  mesh_lib.check_batch(config.batch_size, mesh)
  sharding = mesh_lib.batch_sharding(mesh, config.axis_rules)
  data = task.load_split(config, split)
  t = time.perf_counter()
  m = state_lib.evaluate(state_lib.make_eval_step(config, graphdef), state,
                         task.eval_batches(config, data), lambda b: mesh_lib.to_global(b, sharding))
  row = {'step': int(step), 'split': split, 'unit': task.unit(config), 'bits': m['bits'],
         'loss': m['loss'],
         'tokens': int(m['tokens']), 'mixer': config.model.mixer, 'data': config.data.name,
         'seconds': round(time.perf_counter() - t, 2)}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.jsonl'), 'a') as f:
      f.write(json.dumps(row) + '\n')
  return row


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  if FLAGS.sample:
    if not task.is_images(config):
      raise SystemExit('--sample draws images; for text, train.py prints a sample at the end')
    _, graphdef, step, state = restore(config, FLAGS.workdir)
    images = sampling.sample_images(config, graphdef, state, FLAGS.sample, FLAGS.seed)
    print(f'{FLAGS.sample} samples at step {step}: '
          + sampling.write_image_grid(images, FLAGS.workdir, step))
    return
  row = evaluate_checkpoint(config, FLAGS.workdir, FLAGS.split)
  print(f'{row["split"]} {row["unit"]} at step {row["step"]}: {row["bits"]:.4f} '
        f'({row["tokens"]} tokens)')
  print(json.dumps(row))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, "The run's config file.", lock_config=True)
  flags.DEFINE_string('workdir', None, 'The run directory.')
  flags.DEFINE_enum('split', 'valid', ['valid', 'test'], 'Split to evaluate.')
  flags.DEFINE_integer('sample', 0, 'Instead of evaluating, draw this many images into a PNG '
                       'grid in workdir (and TensorBoard).')
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
