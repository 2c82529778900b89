"""The training loop: `train_and_evaluate(config, workdir)` and its command line.

  python train.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/x \
      [--config.model.num_layers=2 ...]

Rerunning the same command resumes from the newest readable checkpoint in
workdir, with the data iterator's position and the step, so the run ends with
the parameters an uninterrupted run ends with.
"""
from __future__ import annotations

import math
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
from trainlib.metrics import MetricWriter

FLAGS = flags.FLAGS


class NonFiniteError(FloatingPointError):
  pass


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (resuming if workdir has checkpoints), evaluates, samples; returns final metrics."""
  train_data, valid_data = task.load_split(config, 'train'), task.load_split(config, 'valid')
  total_steps = config.num_steps or config.num_epochs * task.steps_per_epoch(config, train_data)
  mesh, batch_sharding, graphdef, state, train_step = state_lib.setup(config, total_steps)

  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints)
  train_iter = task.train_iterator(config, train_data)
  restored = ckpt.restore(state)
  if restored:
    start, state, data_state = restored
    train_iter.set_state(data_state['iterator'])
    print(f'Resumed from {ckpt.directory}/{start} (step {start}).', flush=True)
  else:
    start = 0
  writer = MetricWriter(workdir, total_steps)
  writer.write_config(workdir, config)
  n_params = sum(x.size for x in jax.tree.leaves(state['params']))
  print(f'{n_params / 1e6:.2f}M parameters, mixer {config.model.mixer}, {total_steps} steps, '
        f'mesh {dict(mesh.shape)}, {jax.device_count()} {jax.devices()[0].platform} device(s)',
        flush=True)

  eval_step = state_lib.make_eval_step(config, graphdef)
  to_global = lambda b: mesh_lib.to_global(b, batch_sharding)

  def run_eval(step, max_batches):
    t = time.perf_counter()
    m = state_lib.evaluate(eval_step, state, task.eval_batches(config, valid_data, max_batches),
                           to_global)
    writer.write(step, m, prefix='valid')
    writer.pause(time.perf_counter() - t)
    return m

  if config.eval_at_start and start == 0:
    run_eval(0, config.eval_batches)

  sums, n_logged, pending, valid = {}, 0, None, None

  def consume(step, metrics):
    """Checks one step's metrics (fetched a step late) and logs the interval's means."""
    nonlocal sums, n_logged
    m = jax.device_get(metrics)
    if not (math.isfinite(m['loss']) and math.isfinite(m['grad_norm'])):
      last = ckpt.latest_step()
      raise NonFiniteError(
          f'non-finite loss or gradient at step {step} (loss={m["loss"]}, grad_norm='
          f'{m["grad_norm"]}); stopping. Last good checkpoint: '
          + (f'{ckpt.directory}/{last}' if last is not None else 'none'))
    for k, v in m.items():
      sums[k] = sums.get(k, 0.0) + float(v)
    n_logged += 1
    if step % config.log_every == 0 or step == total_steps:
      means = {k: v / n_logged for k, v in sums.items()}
      means['bits'] = means['loss'] / task.LN2
      writer.write(step, means)
      sums, n_logged = {}, 0

  try:
    for step in range(start + 1, total_steps + 1):
      batch = to_global(next(train_iter))
      state, metrics = train_step(state, batch)
      if pending:
        consume(*pending)
      pending = (step, metrics)
      is_eval = step % config.eval_every == 0 or step == total_steps
      if is_eval or step % config.checkpoint_every == 0:
        consume(*pending)
        pending = None
        last = step == total_steps  # the last evaluation covers the whole split
        valid = run_eval(step, None if last else config.eval_batches) if is_eval else None
        t = time.perf_counter()
        ckpt.save(step, state, {'iterator': train_iter.get_state()},
                  {'loss': valid['loss']} if valid else None)
        writer.pause(time.perf_counter() - t)
  finally:
    ckpt.close()

  if valid is None:  # nothing was left to train: report the restored state
    valid = run_eval(total_steps, None)
  print(f'valid {task.unit(config)}: {valid["bits"]:.4f} over {int(valid["tokens"])} tokens',
        flush=True)
  sample = None
  if task.is_images(config):
    if config.sample.num_images:
      images = sampling.sample_images(config, graphdef, state, config.sample.num_images,
                                      config.seed + 1)
      if jax.process_index() == 0:
        print('samples: ' + sampling.write_image_grid(images, workdir, total_steps), flush=True)
  else:
    sample = sampling.sample_text(config, graphdef, state, valid_data)
    if jax.process_index() == 0:
      print('sample:\n' + sample, flush=True)
      with open(os.path.join(workdir, 'sample.txt'), 'w') as f:
        f.write(sample)
  writer.close()
  return {'valid': valid, 'step': total_steps, 'sample': sample}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if FLAGS.distributed:
    jax.distributed.initialize()
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except NonFiniteError as e:
    raise SystemExit(f'ERROR: {e}')


if __name__ == '__main__':
  # Flags are defined here, not at import, so tests can import train and eval together.
  config_flags.DEFINE_config_file('config', None, 'Task config, e.g. '
                                  'configs/enwik8.py:mixer=softmax', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics).')
  flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host runs).')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
