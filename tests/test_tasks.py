"""Tasks and evaluators as plug-ins; the config's per-mixer options; sampling without a decode
step."""
import json
import keyword
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mixers
import tasks
import train
from evaluators import accuracy, bits, samples
from models import CausalLM, generate
from models.causal_lm import _generate_parallel
from tasks.base import resolve_mixer_options
from tests import toy_task
from tests.helpers import parse, read_metrics


def test_a_task_from_outside_the_project_trains_through_the_loop(tmp_path):
  result = train.train_and_evaluate(toy_task.config(), str(tmp_path))
  assert [r['step'] for r in read_metrics(tmp_path)] == [1, 2]
  assert all(0.0 <= r['accuracy'] <= 1.0 for r in read_metrics(tmp_path))
  valid = read_metrics(tmp_path, 'valid')
  assert [r['step'] for r in valid] == [1, 2] and valid[-1]['examples'] == 20
  assert result['valid']['top1'] <= result['valid']['top2'] <= 1.0
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  written = json.load(open(tmp_path / 'config.json'))  # every mixer's options, resolved
  assert written['model']['mixer_options']['performer']['num_features'] == 256


def test_unknown_task_names_the_builtin_ones():
  with pytest.raises(ValueError, match=r"unknown task 'nope'.*image_lm, .*text_lm"):
    tasks.get(types.SimpleNamespace(task='nope'))


class FixedModel:
  """Stands in for a model: returns the logits stored for the batch."""

  def __init__(self, table):
    self.table = table

  def __call__(self, tokens, rng=None):
    return self.table[tokens[:, 0]]


FAKE_RUN = types.SimpleNamespace(model=lambda params, buffers: FAKE_RUN.fixed,
                                 to_global=lambda b: b, in_mesh=lambda fn: fn)
STATE = {'params': {}, 'buffers': {}}


def test_accuracy_evaluator_counts_top_k_over_unmasked_rows():
  logits = np.array([[3., 1., 2.], [0., 5., 1.], [1., 2., 3.], [9., 0., 0.]], np.float32)
  batches = [{'tokens': np.array([[0], [1]]), 'label': np.array([2, 1]), 'mask': np.ones(2)},
             {'tokens': np.array([[2], [3]]), 'label': np.array([0, 1]),
              'mask': np.array([1., 0.])}]  # row 3 is padding
  task = types.SimpleNamespace(eval_batches=lambda split, n: batches,
                               logits=lambda model, batch: model(batch['tokens']))
  FAKE_RUN.fixed = FixedModel(jnp.asarray(logits))
  got = dict(accuracy.Evaluator(task, FAKE_RUN, top_k=(1, 2)).run(STATE))
  # Example 0: label 2 ranks second; 1: first; 2: label 0 ranks third.
  ce = [np.log(np.exp(r).sum()) - r[l] for r, l in zip(logits[:3], [2, 1, 0])]
  assert got['examples'] == 3
  np.testing.assert_allclose([got['top1'], got['top2']], [1 / 3, 2 / 3])
  np.testing.assert_allclose(got['loss'], np.mean(ce), rtol=1e-6)


def test_bits_evaluator_sums_masked_nll_over_batches():
  nats = [np.array([[0.5, 1.0], [2.0, 4.0]]), np.array([[1.5, 3.0], [7.0, 7.0]])]
  masks = [np.array([[1., 1.], [1., 0.]]), np.array([[1., 1.], [0., 0.]])]
  batches = [{'tokens': np.zeros((2, 2), np.int32), 'mask': m, 'nats': n}
             for n, m in zip(nats, masks)]
  task = types.SimpleNamespace(
      eval_batches=lambda split, n: batches[:n],
      nll=lambda model, b: (jnp.sum(b['nats'] * b['mask']), jnp.sum(b['mask'])))
  FAKE_RUN.fixed = None
  got = dict(bits.Evaluator(task, FAKE_RUN, max_batches=1).run(STATE, final=True))
  assert got['tokens'] == 5  # final: the whole split, whatever max_batches says
  np.testing.assert_allclose(got['loss'], (0.5 + 1 + 2 + 1.5 + 3) / 5)
  np.testing.assert_allclose(got['bits'], got['loss'] / np.log(2))
  assert dict(bits.Evaluator(task, FAKE_RUN, max_batches=1).run(STATE))['tokens'] == 3


def tiny_lm(mixer, start_token, options=None):
  return CausalLM(vocab_size=16, dim=16, num_layers=1, num_heads=2, mlp_dim=32, max_len=24,
                  mixer=mixer, mixer_options=options, start_token=start_token, rngs=nnx.Rngs(1))


@pytest.mark.parametrize('start_token', [False, True])
def test_parallel_fallback_draws_what_the_decode_step_draws(start_token):
  model = tiny_lm('softmax', start_token)
  prompt = jnp.array([[3, 1, 4], [1, 5, 9]]) if not start_token else jnp.zeros((2, 1), jnp.int32)
  n = 24 - prompt.shape[1] + 1 if not start_token else 24
  key = jax.random.key(7)
  cached = nnx.jit(generate, static_argnums=2)(model, prompt, n, key)
  parallel = nnx.jit(_generate_parallel, static_argnums=2)(model, prompt, n, key, 1.0)
  assert cached.shape == (2, n)
  np.testing.assert_array_equal(cached, parallel)


NO_DECODE = ['lsh', 'routing', 'sinkhorn', 'bigbird', 'mlp_mixer']


@pytest.mark.parametrize('mixer', NO_DECODE)
def test_mixers_without_a_decode_step_sample_images(mixer):
  model = tiny_lm(mixer, True)
  with pytest.raises(NotImplementedError):
    model.init_cache(1, 24)  # the fallback is what is tested here
  task = types.SimpleNamespace(sample_prompt=lambda num: (jnp.zeros((num, 1), jnp.int32), 24),
                               render=lambda prompt, t: t.reshape(len(t), 2, 4, 3))
  gd, params, rest = nnx.split(model, nnx.Param, ...)
  run = types.SimpleNamespace(model=lambda p, b: nnx.merge(gd, p, b))
  (name, images), = samples.Evaluator(task, run, num=3).run({'params': params, 'buffers': rest})
  assert name == 'sample' and images.shape == (3, 2, 4, 3)
  assert images.min() >= 0 and images.max() < 16


def test_choosing_the_mixer_by_flag_gets_the_papers_options():
  c = parse('--config=configs/cifar10.py', '--config.model.mixer=aft_local')
  assert resolve_mixer_options(c.model)['window'] == 256
  assert resolve_mixer_options(c.model)['bias_dim'] == 64
  c = parse('--config=configs/enwik8.py', '--config.model.mixer=aft_local')
  assert resolve_mixer_options(c.model)['window'] == 32
  c.model.update(num_layers=1, dim=32, num_heads=2, mlp_dim=32, max_len=64)
  c.data.seq_len = 64
  model = tasks.get(c).build_model(nnx.Rngs(0))
  assert model.blocks[0].mixer.window == 32


def other_value(v):
  if isinstance(v, bool):
    return not v
  if isinstance(v, (int, float)):
    return v + 1
  return v if v is not None else 3


def test_every_mixer_option_is_settable_from_the_command_line():
  defaults = {m: mixers.option_defaults(m) for m in mixers.names()}
  wanted = {m: {o: other_value(v) for o, v in opts.items()} for m, opts in defaults.items()}
  # 'global' is a Python keyword: its path is written as a subscript.
  path = lambda m: f"mixer_options['{m}']" if keyword.iskeyword(m) else f'mixer_options.{m}'
  argv = [f'--config.model.{path(m)}.{o}={v}' for m, opts in wanted.items()
          for o, v in opts.items()]
  assert len(argv) > 40
  c = parse('--config=configs/enwik8.py', *argv)
  for m, opts in wanted.items():
    c.model.mixer = m
    assert resolve_mixer_options(c.model) == opts, m


def test_unknown_mixer_option_lists_the_valid_ones():
  with pytest.raises(Exception, match=r"unknown mixer option 'nope'; its options are: "
                                      r"heads, spatial_shape, window"):
    parse('--config=configs/enwik8.py', '--config.model.mixer_options.aft_conv.nope=1')
  with pytest.raises(Exception, match="'perfromer' is not a registered mixer"):
    parse('--config=configs/enwik8.py', '--config.model.mixer_options.perfromer.num_features=1')

