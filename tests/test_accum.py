"""Gradient accumulation: k micro-batches give the one-batch step (loss, gradient norm, updated
parameters, one Buffer step) up to float rounding, padding included."""
import jax
import numpy as np
import pytest

import tasks
import train
from tests.helpers import tiny_config
from trainlib.run import Run


def run_steps(config, batches):
  """(initial Buffers, final state, per-step metrics) of the train step over `batches`."""
  run = Run(config, steps=len(batches))
  state = run.state
  del run.state
  initial = jax.device_get(state['buffers'])
  out = []
  for batch in batches:
    state, metrics = run.train_step(state, run.to_global(batch))
    out.append(jax.device_get(metrics))
  return initial, jax.device_get(state), out


def test_four_micro_batches_give_the_one_batch_step(zip_path):
  # Routing: its centroids (Buffers) are moved by the forward pass (EMA); Buffers drawn from
  # the step (Performer's redraw) are drawn once before the micro-batches, from the step's key.
  # Adam divides by the gradient's scale: a parameter whose true gradient is 0 (an attention
  # key bias) would take lr-sized steps from rounding noise with eps=1e-9; 1e-6 keeps them tiny.
  options = {'model.mixer': 'routing', 'model.dropout_rate': 0.0, 'optim.eps': 1e-6,
             'model.num_layers': 1}
  config = tiny_config(zip_path, **options)
  data = tasks.get(config).train_iterator()
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(2):
    batch = next(data)
    # Padding: rows keep from 0 to all of their 32 target positions, so the micro-batches hold
    # unequal token counts (an unweighted mean over micro-batches would be off).
    keep = rng.integers(0, 33, size=(len(batch['tokens']), 1))
    batch['mask'] = (np.arange(32)[None] < keep).astype(np.float32)
    batches.append(batch)
  start, one, one_metrics = run_steps(config, batches)
  _, four, four_metrics = run_steps(tiny_config(zip_path, grad_accum_steps=4, **options), batches)
  for a, b in zip(one_metrics, four_metrics):
    for key in ('loss', 'bits', 'grad_norm'):
      np.testing.assert_allclose(b[key], a[key], rtol=2e-5, err_msg=key)
  assert int(four['step']) == 2
  for a, b in zip(jax.tree.leaves(one['params']), jax.tree.leaves(four['params'])):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
  pairs = list(zip(jax.tree.leaves(start), jax.tree.leaves(one['buffers']),
                   jax.tree.leaves(four['buffers'])))
  assert pairs and all(not np.array_equal(s, a) for s, a, _ in pairs)  # they do change
  for s, a, b in pairs:
    # The EMA step is the weighted mean of the micro-batches' steps from the same centroids:
    # one step as far as the whole batch's (four sequential steps would go ~4x as far).
    np.testing.assert_allclose(np.linalg.norm(b - s), np.linalg.norm(a - s), rtol=0.1)


def test_micro_batches_must_divide_over_the_devices(zip_path, tmp_path):
  with pytest.raises(ValueError, match='grad_accum_steps=3 micro-batches'):
    train.train_and_evaluate(tiny_config(zip_path, grad_accum_steps=3), str(tmp_path))
