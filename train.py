"""The training loop: `train_and_evaluate(config, workdir)` and its command line.

  python train.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/x \
      [--config.model.num_layers=2 ...]

The loop knows no task: the task (config.task) gives the model, the data and the
loss, the evaluators (config.evals) give the numbers. Rerunning the same command
resumes from the newest readable checkpoint in workdir, with the data iterator's
position and the step, so the run ends with the parameters an uninterrupted run
ends with.
"""
from __future__ import annotations

import math
import os
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import evaluators
from trainlib.checkpoints import Checkpoints
from trainlib.metrics import MetricWriter
from trainlib.run import Run

FLAGS = flags.FLAGS


class NonFiniteError(FloatingPointError):
  pass


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (resuming if workdir has checkpoints) and runs the evaluators; returns
  {'step': N, <eval name>: {value name: value}} of the final evaluation."""
  run = Run(config)
  task, total_steps, state = run.task, run.total_steps, run.state
  del run.state  # donated by the first step
  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints,
                     best_metric=config.best_metric, best_mode=config.best_mode)
  writer = None
  try:
    train_iter = task.train_iterator()
    restored = ckpt.restore(state)
    if restored:
      start, state, data_state = restored
      train_iter.set_state(data_state['iterator'])
      print(f'Resumed from {ckpt.directory}/{start} (step {start}).', flush=True)
    else:
      start = 0
    writer = MetricWriter(workdir, total_steps, unit=task.unit)
    writer.write_config(config)
    n_params = sum(x.size for x in jax.tree.leaves(state['params']))
    print(f'{n_params / 1e6:.2f}M parameters, task {config.task}, mixer {config.model.mixer}, '
          f'{total_steps} steps, mesh {dict(run.mesh.shape)}, {jax.device_count()} '
          f'{jax.devices()[0].platform} device(s)', flush=True)
    evals = evaluators.build_all(config, task, run)
    results = {}

    def evaluate(step, final):
      """Runs the evaluators due at `step` (all of them when final); returns their scalars."""
      t = time.perf_counter()
      out = {}
      for name, (ev, every) in evals.items():
        if final or (every and step % every == 0):
          values = dict(ev.run(state, final))
          writer.write(step, values, prefix=name)
          out.update({f'{name}/{k}': v for k, v in values.items() if isinstance(v, float)})
          results[name] = values
      writer.pause(time.perf_counter() - t)
      return out

    if config.eval_at_start and start == 0:
      evaluate(0, final=False)

    sums, n_logged, pending = {}, 0, None

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
        writer.write(step, {k: v / n_logged for k, v in sums.items()})
        sums, n_logged = {}, 0

    for step in range(start + 1, total_steps + 1):
      batch = run.to_global(next(train_iter))
      state, metrics = run.train_step(state, batch)
      if pending:
        consume(*pending)
      pending = (step, metrics)
      last = step == total_steps
      due = any(every and step % every == 0 for _, every in evals.values())
      if last or due or step % config.checkpoint_every == 0:
        consume(*pending)
        pending = None
        scalars = evaluate(step, final=last) if (last or due) else {}
        t = time.perf_counter()
        ckpt.save(step, state, {'iterator': train_iter.get_state()}, scalars)
        writer.pause(time.perf_counter() - t)
    if start >= total_steps:  # nothing was left to train: report the restored state
      evaluate(total_steps, final=True)
  finally:
    ckpt.close()
    if writer is not None:
      writer.close()
  return {'step': total_steps, **results}


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
