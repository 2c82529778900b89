"""Per-token NLL over a split: 'loss' (nats), 'bits' (bits/char or bits/dim) and 'tokens'.

Uses the task's `nll(model, batch) -> (summed nats, count)`; masked positions and
padded rows count for nothing, so the whole split is covered exactly once.
"""
from __future__ import annotations

import jax
import numpy as np

from evaluators.units import bits


class Evaluator:
  reads_split = True

  def __init__(self, task, run, *, split: str = 'valid', max_batches: int | None = None):
    self.task, self.run_ctx, self.split, self.max_batches = task, run, split, max_batches
    self._sums = run.in_mesh(jax.jit(
        lambda params, buffers, batch: task.nll(run.model(params, buffers), batch)))

  def run(self, state, final: bool = False):
    """final: the whole split, whatever max_batches says (the number a run ends on)."""
    # Each batch's sums are fetched before the next is dispatched: with many programs in flight,
    # sequence-parallel collectives on 8 fake CPU devices hit XLA's rendezvous timeout (seen in
    # a whole-split evaluation); the fetch costs one tiny transfer per batch.
    sums = [jax.device_get(self._sums(state['params'], state['buffers'],
                                      self.run_ctx.to_global(b)))
            for b in self.task.eval_batches(self.split, None if final else self.max_batches)]
    total, count = np.asarray(jax.device_get(sums), np.float64).reshape(-1, 2).sum(0)
    loss = float(total) / max(float(count), 1.0)
    yield 'loss', loss
    yield 'bits', bits(loss)
    yield 'tokens', float(count)
