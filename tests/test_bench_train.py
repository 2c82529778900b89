"""The train-step bench's pieces that run without torch: the closed-form model and schedule the
PyTorch peer is built from (against our model and trainlib's schedule), every task config's
random batch (against a real one), and the tables' ratio and compile columns."""
import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

import tasks
from bench import compile_times, lm_spec, train_step
from bench.train_cases import load_config
from trainlib import optim

TINY = {'model.num_layers': 2, 'model.dim': 16, 'model.num_heads': 2, 'model.mlp_dim': 24,
        'model.max_len': 40, 'data.seq_len': 40, 'batch_size': 2}


@pytest.mark.parametrize('position', ['learned', 'none'])
def test_param_count_is_our_models(position):
  config = load_config('configs/enwik8.py:mixer=softmax',
                       {**TINY, 'model.position': position})
  model = tasks.get(config).build_model(nnx.Rngs(0))
  ours = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert lm_spec.param_count(lm_spec.model_spec(config), 40) == ours


@pytest.mark.parametrize('name', ['cosine', 'rsqrt', 'constant'])
def test_schedule_is_trainlibs(name):
  o = {'lr': 3e-3, 'schedule': name, 'warmup_steps': 7, 'b1': 0.9, 'b2': 0.98, 'eps': 1e-9,
       'weight_decay': 0.1, 'grad_clip': 1.0}
  ours = optim.schedule(ml_collections.ConfigDict(o), 30)
  for step in (0, 3, 7, 8, 20, 30, 45):
    assert lm_spec.learning_rate(o, step, 30) == pytest.approx(float(ours(step)), rel=1e-5,
                                                               abs=1e-12)


def test_compile_cases_cover_every_config_with_batches_of_their_tasks():
  assert {c.partition(':')[0] for c in compile_times.CASES} == compile_times.config_files()
  rng = np.random.default_rng(0)
  for case in compile_times.CASES:
    config = load_config(compile_times.config_path(case), {})
    batch = tasks.get(config).example_batch(3, rng)
    assert batch and all(len(v) == 3 for v in batch.values()), case


@pytest.mark.parametrize('case', ['enwik8:quick', 'lra:task=listops,quick'])
def test_example_batch_is_shaped_as_the_real_data(case):
  config = load_config(compile_times.config_path(case), {'batch_size': 4})
  task = tasks.get(config)
  real = next(task.train_iterator())
  fake = task.example_batch(4, np.random.default_rng(0))
  assert {k: (v.shape, v.dtype) for k, v in fake.items()} == {
      k: (np.asarray(v).shape, np.asarray(v).dtype) for k, v in real.items() if k in fake}


def row(impl, length, tokens_per_s, status='ok', **extra):
  return {'impl': impl, 'length': length, 'status': status, 'tokens_per_s': tokens_per_s,
          'params': 1000, 'mixer_share': None if impl == 'torch_sdpa' else 0.5,
          'first_step_s': 2.0, 'num_layers': 2, 'dim': 16, 'heads': 2, 'mlp_dim': 24,
          'batch': 2, 'dtype': 'float32', **extra}


def test_ratio_column_is_tokens_per_s_over_the_peers():
  rows = [row('softmax', 64, 300.0), row('softmax', 128, 100.0),
          row('aft_simple', 64, 600.0), row('aft_simple', 128, None, status='oom'),
          row('torch_sdpa', 64, 200.0), row('torch_sdpa', 128, None, status='timeout')]
  assert train_step.ratios(rows, 'torch_sdpa') == {
      ('softmax', 64): 1.5, ('aft_simple', 64): 3.0, ('torch_sdpa', 64): 1.0}
  assert train_step.ratios(rows, 'softmax') == {
      ('softmax', 64): 1.0, ('softmax', 128): 1.0, ('aft_simple', 64): 2.0,
      ('torch_sdpa', 64): 2 / 3}
  text = train_step.markdown(rows, [64, 128])
  assert '| T=64 tokens/s | T=64 x softmax | T=64 x torch_sdpa |' in text
  assert '| aft_simple | 1,000 | 600 | 2.00 | 3.00 | 50% | 2.0 | oom |  |  |  |  |' in text
  assert '| torch_sdpa | 1,000 | 200 | 0.67 | 1.00 |  | 2.0 | timeout |  |  |  |  |' in text
  assert 'x torch_sdpa' not in train_step.markdown(rows[:4], [64, 128])


def test_compile_table_has_a_line_per_config_and_names_failures():
  ok = {'status': 'ok', 'num_layers': 12, 'dim': 512, 'params': 25.3e6,
        'batch_shapes': {'tokens': [1, 1025]}, 'lower_s': 1.0, 'compile_s': 20.0,
        'run_s': 0.5, 'first_step_s': 21.5}
  rows = [{'case': 'enwik8', 'layout': 'looped', **ok},
          {'case': 'enwik8', 'layout': 'scanned', **ok, 'compile_s': 5.0, 'first_step_s': 6.5},
          {'case': 'cifar10', 'layout': 'looped', 'status': 'timeout', 'error': 'over 900 s'}]
  text = compile_times.markdown(rows, ['looped', 'scanned'])
  assert '| enwik8 | 12L d512 | 25.3M | tokens 1x1025 | 1.0 | 20.0 | 21.5 | 1.0 | 5.0 | 6.5 |' in text
  assert '| cifar10 |  |  |  |  |  | timeout |  |  |  |' in text
  assert '- cifar10 (looped): timeout: over 900 s' in text
