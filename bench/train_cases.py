"""Worker side of bench.train_step and bench.compile_times: a task's jitted train step
(trainlib.run's, as train.py builds it) on a random batch of the task's shapes, and the mixer
alone at the same shapes; or (spec['compile_only']) the step's lowering, compilation and first
execution timed apart."""
from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from bench import jax_cases
from bench.lm_spec import SCHEDULE_STEPS
from configs.common import override
from bench.measure import time_train_steps
import tasks
from tasks.base import resolve_mixer_options
from trainlib.run import Run


def load_config(path: str, overrides: dict):
  """The config file (with its ':arg') as train.py reads it, then dotted-key overrides."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=values)
  values(['bench', f'--config={path}'])
  return override(values.config, overrides)


def compile_first_step(run, state, batch, record) -> None:
  """Lowering, XLA compilation and the first execution of the train step, timed apart."""
  t = time.perf_counter()
  with jax.set_mesh(run.mesh):  # as run.train_step traces it
    lowered = run.train_step.__wrapped__.lower(state, batch)
  lower_s = time.perf_counter() - t
  t = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t
  record(lower_s=lower_s, compile_s=compile_s)
  t = time.perf_counter()
  jax.block_until_ready(compiled(state, batch))
  run_s = time.perf_counter() - t
  record(run_s=run_s, first_step_s=lower_s + compile_s + run_s)


def measure(spec: dict, record) -> None:
  config = load_config(spec['config'], spec['overrides'])
  windows = 'seq_len' in config.data  # text windows take the bench's length; an image is fixed
  if windows and spec.get('length'):
    override(config, {'data.seq_len': spec['length'], 'model.max_len': spec['length']})
  task = tasks.get(config)
  m, batch_size = config.model, config.batch_size
  record(batch=batch_size, num_layers=m.num_layers, dim=m.dim, heads=m.num_heads,
         mlp_dim=m.mlp_dim, dtype=m.compute_dtype)
  run = Run(config, steps=SCHEDULE_STEPS, task=task)
  state = run.state
  del run.state
  record(params=sum(x.size for x in jax.tree.leaves(state['params'])))
  # Random values: the step's cost does not depend on the data.
  example = task.example_batch(batch_size, np.random.default_rng(0))
  record(batch_shapes={k: list(v.shape) for k, v in example.items()})
  batch = run.to_global(example)
  if spec.get('compile_only'):
    return compile_first_step(run, state, batch, record)
  length = task.seq_len
  if length != spec['length']:
    raise ValueError(f'an image task has {length} tokens per example, not {spec["length"]}')

  def step():
    nonlocal state
    state, metrics = run.train_step(state, batch)  # the state is donated: keep the new one
    jax.block_until_ready((state, metrics))

  seconds = time_train_steps(step, spec['repeats'], batch_size * length, record)
  del state  # free the model before the mixer alone is measured

  alone = dict(impl=m.mixer, options=resolve_mixer_options(m), mode='causal', length=length,
               batch=batch_size, heads=m.num_heads, head_dim=m.dim // m.num_heads,
               dtype=m.compute_dtype, repeats=spec['repeats'], phases=('fwdbwd',))
  fields = {}
  jax_cases.measure(alone, lambda **f: fields.update(f))
  record(mixer_fwdbwd_s=fields['fwdbwd_s'],
         mixer_share=m.num_layers * fields['fwdbwd_s'] / seconds)
