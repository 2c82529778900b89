"""Orbax checkpoints: train state + data-iterator position in one step directory.

Keeps the last `keep` steps and the best one by an evaluator's value (config.best_metric,
e.g. 'valid/loss', lower is better with best_mode='min'); the value is stored with its
checkpoint, so the best survives any number of reopenings. Saving is asynchronous;
`check()` raises a failed background save at the next step.

Restoring walks back from the newest step and tells two failures apart:
- damaged (bytes unreadable, items missing, a save that never committed): reported by
  name, set aside as `<step>.corrupt` (`.corrupt.1`, ... never overwriting an earlier
  one) and the previous step is tried;
- written for another model (its arrays' shapes differ from this run's): nothing is
  touched and `CheckpointMismatch` is raised.
Opened read_only (eval.py), nothing is ever moved or written.
"""
from __future__ import annotations

import logging
import os
import shutil

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp


class CheckpointMismatch(ValueError):
  """The checkpoint holds a different model (structure or shapes) than the restore target."""


class SaveFailed(RuntimeError):
  pass


class _QuietOrbax(logging.Filter):
  # Saves between evaluations carry no metric on purpose; read-only opening is intended; a
  # failed background save is reported once, by SaveFailed (with the first cause orbax
  # logged), not by orbax's tracebacks.
  first_error = None

  def filter(self, record):
    msg = record.getMessage()
    if record.levelno >= logging.ERROR and '/orbax/' in record.pathname:
      if record.exc_info and _QuietOrbax.first_error is None:
        _QuietOrbax.first_error = _error_line(record.exc_info[1])
      return False
    return not any(m in msg for m in ('did not provide metrics', 'directory is read only',
                                      'read_only=True, setting create=False'))


logging.getLogger('absl').addFilter(_QuietOrbax())


def _error_line(e: Exception) -> str:
  lines = [l for l in str(e).splitlines() if l.strip() and '<bound method' not in l]
  return f'{type(e).__name__}: {(lines[0] if lines else "")[:200]}'


def _signature(tree) -> list:
  """Sorted (shape, dtype) of every array: equal for the same model, whatever the pytree types."""
  return sorted((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(tree))


class Checkpoints:

  def __init__(self, directory: str, keep: int = 3, best_metric: str = 'valid/loss',
               best_mode: str = 'min', read_only: bool = False):
    if best_mode not in ('min', 'max'):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    self.keep, self.best_metric, self.read_only = max(1, keep), best_metric, read_only
    self.best_mode = best_mode
    self._pending = None   # the step whose asynchronous save has not been seen to commit
    self.failed = False
    self._open()

  def _open(self):
    sign = -1.0 if self.best_mode == 'min' else 1.0
    # BestN keeps the highest values: rank by the metric, negated when lower is better.
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=self.keep),
        pp.BestN(get_metric_fn=lambda m: sign * m[self.best_metric], n=1,
                 keep_checkpoints_without_metrics=False)])
    # best_fn makes orbax write the metrics beside each checkpoint (read back on reopening).
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=lambda m: m[self.best_metric],
        best_mode=self.best_mode, read_only=self.read_only)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def last_committed(self) -> str:
    steps = [int(n) for n in os.listdir(self.directory) if n.isdigit()]
    return f'{self.directory}/{max(steps)}' if steps else 'none'

  def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
    """metrics: the evaluators' values at this step; kept when they hold best_metric."""
    self.check()
    metrics = {self.best_metric: metrics[self.best_metric]} if (
        metrics and self.best_metric in metrics) else None
    try:
      self.manager.save(step, metrics=metrics, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))
    except Exception as e:
      raise self._failed(step, _error_line(e)) from e
    self._pending = step

  def wait(self) -> None:
    """Blocks until the last save has committed; raises SaveFailed if it did not."""
    self.manager.wait_until_finished()
    self.check()

  def check(self) -> None:
    """Raises SaveFailed once the last save has finished without committing. (Orbax reports a
    failed background save only at the next save, after waiting minutes for it.)"""
    if self._pending is None or self.manager.is_saving_in_progress():
      return
    step, self._pending = self._pending, None
    if not os.path.isdir(os.path.join(self.directory, str(step))):
      raise self._failed(step, _QuietOrbax.first_error or 'it did not commit')

  def _failed(self, step, why: str) -> SaveFailed:
    self.failed = True
    if jax.process_index() == 0:  # a partial write would only take disk space
      for name in os.listdir(self.directory):
        if name.startswith(f'{step}.orbax-checkpoint-tmp'):
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    return SaveFailed(f'saving checkpoint {self.directory}/{step} failed ({why}); stopping. The '
                      f'last checkpoint that committed is {self.last_committed()}: rerun the same '
                      f'command (once the cause is fixed) to resume from it.')

  def restore(self, target):
    """Newest readable (step, state, data_state) laid out like `target`; None if no checkpoint."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        saved = self.manager.item_metadata(step)['state']
      except Exception as e:  # unreadable metadata: damaged
        self._set_aside(step, e)
        continue
      if saved is not None and _signature(saved) != _signature(abstract):
        n_saved, n_target = len(jax.tree.leaves(saved)), len(jax.tree.leaves(abstract))
        raise CheckpointMismatch(
            f'checkpoint {self.directory}/{step} holds another model than this config builds ('
            + (f'{n_saved} arrays against {n_target}' if n_saved != n_target else
               'arrays of other shapes') + ')')
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        return step, r['state'], r['data']
      except Exception as e:  # orbax/tensorstore raise many types for damaged files
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, e: Exception) -> None:
    bad = os.path.join(self.directory, str(step))
    if self.read_only:
      print(f'WARNING: checkpoint {bad} is unreadable ({_error_line(e)}); trying the previous '
            f'one.', flush=True)
      return
    aside, n = bad + '.corrupt', 0
    while os.path.exists(aside):
      n += 1
      aside = f'{bad}.corrupt.{n}'
    print(f'WARNING: checkpoint {bad} is unreadable ({_error_line(e)}); moving it to {aside} and '
          f'trying the previous one.', flush=True)
    if jax.process_index() == 0:
      shutil.move(bad, aside)
    self.manager.close()
    self._open()

  def close(self) -> None:
    """Waits for the last save (unless one failed: orbax would wait minutes for it)."""
    if self.failed:
      return
    try:
      self.wait()
    finally:
      self.manager.close()
