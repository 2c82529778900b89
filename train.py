"""The training loop: `train_and_evaluate(config, workdir)` and its command line.

  python train.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/x \
      [--config.model.num_layers=2 ...]

The loop knows no task: the task (config.task) gives the model, the data and the
loss, the evaluators (config.evals) give the numbers. Rerunning the same command
resumes from the newest readable checkpoint in workdir, with the data iterator's
position and the step, so the run ends with the parameters an uninterrupted run
ends with. SIGTERM or Ctrl-C finishes the current step, saves such a checkpoint, says
where and exits 0 (trainlib/preemption.py).
"""
from __future__ import annotations

import math
import os
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import evaluators
from trainlib import preemption
from trainlib.profiling import Profiler
from trainlib import workdir as workdir_lib
from trainlib.cli import parse_flags
from trainlib.checkpoints import CheckpointMismatch, Checkpoints, SaveFailed
from trainlib.metrics import MetricWriter, speed_facts
from trainlib.run import Run

FLAGS = flags.FLAGS


class NonFiniteError(FloatingPointError):
  pass


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (resuming if workdir has checkpoints) and runs the evaluators; returns
  {'step': N, <eval name>: {value name: value}} of the final evaluation. One process at a
  time holds the workdir (a lock file, process 0's). Stopped by a signal, it returns
  {'step': <the step saved>, 'stopped_by': <signal>} and the evaluations run on the way."""
  lock = workdir_lib.Lock(workdir) if jax.process_index() == 0 else None
  if lock:
    lock.acquire()
  try:
    # Handlers for the whole run: a notice during startup stops it after its first step.
    with preemption.StopRequest() as stop:
      return _train(config, workdir, stop)
  finally:
    if lock:
      lock.release()


def _restore(config, workdir, ckpt, state, recorded):
  """(start step, state, data state or None): the workdir's newest readable checkpoint, else
  config.init_from's parameters, else the fresh state. Refuses a checkpoint of another model."""
  if ckpt.latest_step() is not None:
    workdir_lib.check_same_model(workdir, config, recorded)
  try:
    restored = ckpt.restore(state)
  except CheckpointMismatch as e:
    raise workdir_lib.mismatch(e, workdir, config, recorded) from None
  if restored:
    step, state, data_state = restored
    changed = workdir_lib.config_changes(recorded, config) if recorded else []
    print(f'Resumed from {ckpt.directory}/{step} (step {step})'
          + (f' with config changes: {workdir_lib.describe(changed)}' if changed else '') + '.',
          flush=True)
    return step, state, data_state
  if config.init_from:
    source = Checkpoints(os.path.join(config.init_from, 'checkpoints'), read_only=True)
    try:
      found = source.restore(state)
    finally:
      source.close()
    if found is None:
      raise FileNotFoundError(f'config.init_from={config.init_from!r} has no readable checkpoint')
    print(f'Parameters and buffers from {source.directory}/{found[0]}; optimizer and step fresh.',
          flush=True)
    state = {**state, 'params': found[1]['params'], 'buffers': found[1]['buffers']}
  return 0, state, None


def _train(config, workdir: str, stop: preemption.StopRequest) -> dict:
  recorded = workdir_lib.recorded_config(workdir)
  profiler = Profiler(config, workdir)  # checks config.profile_steps first
  run = Run(config)
  task, total_steps, state = run.task, run.total_steps, run.state
  del run.state  # donated by the first step
  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints,
                     best_metric=config.best_metric, best_mode=config.best_mode)
  writer = train_iter = None
  try:
    evals = evaluators.build_all(config, task, run)
    train_iter = task.train_iterator()
    start, state, data_state = _restore(config, workdir, ckpt, state, recorded)
    if data_state:
      train_iter.set_state(data_state['iterator'])
    # Rows of the steps this run redoes (all, when it starts afresh) go.
    workdir_lib.trim_metrics(workdir, start if data_state else -1)
    speed = speed_facts(task, config)  # units/s and MFU in the train rows
    writer = MetricWriter(workdir, total_steps, unit=task.unit,
                          purge_step=start + 1 if data_state else 0, speed=speed)
    n_params = sum(x.size for x in jax.tree.leaves(state['params']))
    writer.write_config(config, parameters=int(n_params), **speed)
    print(f'{n_params / 1e6:.2f}M parameters, task {config.task}, mixer {config.model.mixer}, '
          f'{total_steps} steps, mesh {dict(run.mesh.shape)}, {jax.device_count()} '
          f'{jax.devices()[0].platform} device(s)', flush=True)
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

    def consume(step, metrics, flush=False):
      """Checks one step's metrics (fetched a step late) and logs the interval's means (at
      log_every, at the end, or flushed early when stopping)."""
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
      if flush or step % config.log_every == 0 or step == total_steps:
        writer.write(step, {k: v / n_logged for k, v in sums.items()})
        sums, n_logged = {}, 0

    for step in range(start + 1, total_steps + 1):
      ckpt.check()  # a failed background save stops the run now, not at the next save
      batch = run.to_global(next(train_iter))
      profiler.before(step)
      state, metrics = run.train_step(state, batch)
      profiler.after(step, state)
      if pending:
        consume(*pending)
      pending = (step, metrics)
      last = step == total_steps
      due = any(every and step % every == 0 for _, every in evals.values())
      stopping = stop.reached(step, ckpt.manager) and not last
      if last or due or stopping or step % config.checkpoint_every == 0:
        consume(*pending, flush=stopping)
        pending = None
        scalars = evaluate(step, final=last) if (last or due) else {}
        t = time.perf_counter()
        ckpt.save(step, state, {'iterator': train_iter.get_state()}, scalars)
        writer.pause(time.perf_counter() - t)
      if stopping:
        ckpt.wait()
        print(f'Stopped by {stop.signal_name} after step {step} of {total_steps}: saved '
              f'{ckpt.directory}/{step} (with the data position). Rerun the same command to '
              f'resume.', flush=True)
        return {'step': step, 'stopped_by': stop.signal_name, **results}
    if start >= total_steps:  # nothing was left to train: report the restored state
      evaluate(total_steps, final=True)
  finally:
    profiler.stop()
    if hasattr(train_iter, 'close'):
      train_iter.close()  # stops grain's worker processes, if any, while the handlers hold
    ckpt.close()
    if writer is not None:
      writer.close()
  return {'step': total_steps, **results}


def cli(config, workdir: str) -> int:
  """train_and_evaluate with the command line's exit status: 2 for a config or input error, 1
  for a run that had to stop, each with one ERROR line; a traceback only for a project bug."""
  try:
    train_and_evaluate(config, workdir)
  except (ValueError, FileNotFoundError) as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    return 2
  except NonFiniteError as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    return 1
  except KeyboardInterrupt:
    print('ERROR: interrupted (Ctrl-C twice) before a checkpoint of this step; rerun the same '
          'command to resume from the last one.', file=sys.stderr, flush=True)
    return 130
  except SaveFailed as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # orbax's thread for the failed save would hold the exit for minutes
  return 0


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if FLAGS.distributed:
    jax.distributed.initialize()
  sys.exit(cli(FLAGS.config, FLAGS.workdir))


if __name__ == '__main__':
  # Flags are defined here, not at import, so tests can import train and eval together.
  config_flags.DEFINE_config_file('config', None, 'Task config, e.g. '
                                  'configs/enwik8.py:mixer=softmax', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics).')
  flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host runs).')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=parse_flags)
