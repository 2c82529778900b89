"""Model FLOPs (mixers/flops.py, models/flops.py) against XLA's count of the compiled program,
and the speed values of the train rows (units/s, model FLOP/s; MFU only with a known peak)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
import tasks
from configs import cifar10
from mixers.flops import FlopsUnknown, mixer_flops, pairs
from models import Encoder
from models.flops import TRAIN_FACTOR, causal_lm_flops, stack_flops
from tasks.base import resolve_mixer_options
from tests.helpers import read_metrics, tiny_config
from trainlib.metrics import speed_facts, speed_scalars

B, T, D, H = 2, 64, 64, 4
# Ours / XLA's: XLA also counts the elementwise work (softmax, biases, LayerNorm) that model
# FLOPs leave out, so ours is a few percent lower; a wrong formula is off by far more.
LOW, HIGH = 0.88, 1.01


def xla_flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)['flops']


@pytest.mark.parametrize('name,options', [('softmax', {}), ('aft_full', {}), ('aft_simple', {}),
                                          ('performer', {'num_features': 32}), ('linear', {})])
def test_mixer_forward_flops_match_xla(name, options):
  """Bidirectional, where the kernels compute exactly the model's math (causal kernels compute
  masked or chunked extra work that model FLOPs do not count)."""
  m = mixers.build(name, dim=D, num_heads=H, max_len=T, causal=False, rngs=nnx.Rngs(0),
                   **options)
  graphdef, state = nnx.split(m)
  xla = xla_flops(lambda s, x: nnx.merge(graphdef, s)(x), state, jnp.ones((B, T, D)))
  ours = mixer_flops(name, batch=B, length=T, dim=D, num_heads=H, causal=False, **options)
  assert LOW <= ours / xla <= HIGH, (ours, xla)


def test_stack_flops_forward_and_training_match_xla():
  """Two layers (mixer + MLP): the forward count, and 3x it for the gradient's program."""
  kw = dict(dim=D, num_layers=2, num_heads=H, mlp_dim=4 * D, max_len=T, mixer='softmax')
  graphdef, state = nnx.split(Encoder(**kw, rngs=nnx.Rngs(0)))
  loss = lambda s, x: jnp.sum(nnx.merge(graphdef, s)(x))
  x = jnp.ones((B, T, D))
  ours = stack_flops(batch=B, length=T, causal=False, **{k: v for k, v in kw.items()
                                                         if k != 'max_len'})
  assert LOW <= ours / xla_flops(loss, state, x) <= HIGH
  assert LOW <= TRAIN_FACTOR * ours / xla_flops(jax.grad(loss), state, x) <= HIGH


def test_attended_pairs_count_the_mask():
  t = np.arange(50)
  diff = t[:, None] - t[None, :]
  assert pairs(50, causal=False) == 50 * 50
  assert pairs(50, causal=True) == np.sum(diff >= 0)
  for w in (1, 7, 50, 80):
    assert pairs(50, causal=True, window=w) == np.sum((diff >= 0) & (diff < w))
    assert pairs(50, causal=False, window=w) == np.sum(np.abs(diff) < w)


def test_aft_and_performer_do_not_follow_6n():
  """6 x parameters x tokens counts AFT-full's position-bias factors U, V [max_len, bias_dim]
  as if every token multiplied them (they make a T x T bias once per step): 6N overcounts. It
  misses Performer's feature maps, whose projection is a Buffer, not a parameter: 6N
  undercounts."""
  def ratio(name, **options):
    m = mixers.build(name, dim=D, num_heads=H, max_len=1024, causal=True, rngs=nnx.Rngs(0),
                     **options)
    n = sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    ours = TRAIN_FACTOR * mixer_flops(name, batch=B, length=1024, dim=D, num_heads=H,
                                      causal=True, **options)
    return ours / (6.0 * n * B * 1024)
  assert ratio('aft_full') < 0.8
  assert ratio('performer', num_features=256) > 3


def test_unknown_flops_omit_mfu(zip_path):
  with pytest.raises(FlopsUnknown, match="FLOPs unknown for mixer 'sinkhorn'"):
    mixer_flops('sinkhorn', batch=1, length=8, dim=8, num_heads=1, causal=True)
  config = tiny_config(zip_path, **{'model.mixer': 'sinkhorn'})
  facts = speed_facts(tasks.get(config), config)
  assert 'flops_per_step' not in facts and "mixer 'sinkhorn'" in facts['mfu_omitted']
  assert speed_scalars(2.0, facts) == {'steps_per_s': 2.0, 'tokens_per_s': 2.0 * 8 * 32}
  # With a known peak: MFU = model FLOP/s / the mesh's peak.
  known = {'throughput_unit': 'tokens', 'units_per_step': 100, 'flops_per_step': 1e9,
           'peak_flops': 1e10}
  assert speed_scalars(2.0, known) == pytest.approx(
      {'steps_per_s': 2.0, 'tokens_per_s': 200.0, 'model_flops_per_s': 2e9, 'mfu': 0.2})


def test_image_task_counts_images():
  config = cifar10.get_config('mixer=aft_local,quick')
  facts = speed_facts(tasks.get(config), config)
  assert facts['throughput_unit'] == 'images' and facts['units_per_step'] == config.batch_size
  m = config.model
  assert facts['flops_per_step'] == TRAIN_FACTOR * causal_lm_flops(
      m, resolve_mixer_options(m), config.batch_size, 16 * 16 * 3)


def test_train_rows_carry_tokens_per_s_and_flops(reference, zip_path):
  """The reference run (1 CPU device): tokens/s and model FLOP/s in metrics.jsonl; no MFU, the
  CPU's peak being unknown (run.json says so)."""
  workdir, _ = reference
  config = tiny_config(zip_path)
  with open(os.path.join(workdir, 'run.json')) as f:
    run = json.load(f)
  m = config.model
  assert run['flops_per_step'] == pytest.approx(
      TRAIN_FACTOR * causal_lm_flops(m, resolve_mixer_options(m), 8, 32))
  assert "peak FLOPs unknown for device kind 'cpu'" in run['mfu_omitted']
  rows = [r for r in read_metrics(workdir) if 'steps_per_s' in r]
  assert rows
  for r in rows:
    assert r['tokens_per_s'] == pytest.approx(r['steps_per_s'] * 8 * 32)
    assert r['model_flops_per_s'] == pytest.approx(r['steps_per_s'] * run['flops_per_step'])
    assert 'mfu' not in r
