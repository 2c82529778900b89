"""Classification accuracy over a split: 'top1', 'top5' (the `top_k` asked for), 'loss', 'examples'.

Uses the task's `logits(model, batch) -> [batch, classes]` and batch['label']; padded
rows (mask 0) count for nothing. A retrieval task that scores pairs as matching or
not reports its retrieval accuracy through this evaluator too.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def counts(logits, labels, mask, top_k):
  """Summed cross-entropy, top-k hits for each k, and the example count, over unmasked rows."""
  label_score = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  # A label is within the top k when fewer than k classes score strictly higher.
  rank = jnp.sum(logits > label_score, axis=-1)
  hits = [jnp.sum((rank < k) * mask) for k in top_k]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.stack([jnp.sum(ce * mask), *hits, jnp.sum(mask)])


class Evaluator:
  reads_split = True

  def __init__(self, task, run, *, split: str = 'valid', max_batches: int | None = None,
               top_k=(1, 5)):
    self.task, self.run_ctx, self.split, self.max_batches = task, run, split, max_batches
    self.top_k = tuple(int(k) for k in top_k)

    def batch_counts(params, buffers, batch):
      logits = task.logits(run.model(params, buffers), batch)
      mask = batch.get('mask', jnp.ones(logits.shape[0], jnp.float32))
      return counts(logits, batch['label'], mask, self.top_k)
    self._counts = run.in_mesh(jax.jit(batch_counts))

  def run(self, state, final: bool = False):
    # Fetched batch by batch, as in evaluators/bits.py (collectives of many programs in flight).
    rows = [jax.device_get(self._counts(state['params'], state['buffers'],
                                        self.run_ctx.to_global(b)))
            for b in self.task.eval_batches(self.split, None if final else self.max_batches)]
    total = np.sum(np.asarray(jax.device_get(rows), np.float64).reshape(-1, len(self.top_k) + 2),
                   0)
    n = max(total[-1], 1.0)
    yield 'loss', float(total[0] / n)
    for k, hits in zip(self.top_k, total[1:-1]):
      yield f'top{k}', float(hits / n)
    yield 'examples', float(total[-1])
