"""Orbax checkpoints: train state + data-iterator position in one step directory.

Keeps the last `keep` steps and the best one by an evaluator's value (config.best_metric,
e.g. 'valid/loss', lower is better with best_mode='min'). Saving is asynchronous.
Restoring walks back from the newest step: one that cannot be read (truncated,
zeroed, missing items) is reported by name, moved aside to `<step>.corrupt` and the
previous step is tried, so a crash mid-write never costs more than the steps since
the last good checkpoint. Opened read_only (eval.py), nothing is moved or written.
"""
from __future__ import annotations

import os
import shutil

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp


class Checkpoints:

  def __init__(self, directory: str, keep: int = 3, best_metric: str = 'valid/loss',
               best_mode: str = 'min', read_only: bool = False):
    if best_mode not in ('min', 'max'):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    self.keep, self.best_metric, self.read_only = max(1, keep), best_metric, read_only
    self._sign = -1.0 if best_mode == 'min' else 1.0
    self._open()

  def _open(self):
    # BestN keeps the highest values: rank by the metric, negated when lower is better.
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=self.keep),
        pp.BestN(get_metric_fn=lambda m: self._sign * m[self.best_metric], n=1,
                 keep_checkpoints_without_metrics=False)])
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(preservation_policy=policy,
                                                             read_only=self.read_only))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
    """metrics: the evaluators' values at this step; kept when they hold best_metric."""
    metrics = metrics if metrics and self.best_metric in metrics else None
    self.manager.save(step, metrics=metrics, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))

  def restore(self, target):
    """Newest readable (step, state, data_state) laid out like `target`; None if no checkpoint."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        return step, r['state'], r['data']
      except Exception as e:  # orbax/tensorstore raise many types for damaged files
        bad = os.path.join(self.directory, str(step))
        print(f'WARNING: checkpoint {bad} is unreadable ({type(e).__name__}: '
              f'{str(e).splitlines()[0][:200]}); '
              + ('trying the previous one.' if self.read_only else
                 f'moving it to {bad}.corrupt and trying the previous one.'), flush=True)
        if not self.read_only:
          if jax.process_index() == 0:
            shutil.move(bad, bad + '.corrupt')
          self.manager.close()
          self._open()
    return None

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
