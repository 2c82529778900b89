"""Worker side of bench.train_step: a task's jitted train step (trainlib.run's, as train.py
builds it) on random tokens, and the mixer alone at the same shapes."""
from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from bench import jax_cases
from configs.common import override
from bench.measure import median_time
import tasks
from tasks.base import resolve_mixer_options
from trainlib.run import Run


def load_config(path: str, overrides: dict):
  """The config file (with its ':arg') as train.py reads it, then dotted-key overrides."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=values)
  values(['bench', f'--config={path}'])
  return override(values.config, overrides)


def measure(spec: dict, record) -> None:
  config = load_config(spec['config'], spec['overrides'])
  windows = 'seq_len' in config.data  # text windows take the bench's length; an image is fixed
  if windows:
    override(config, {'data.seq_len': spec['length'], 'model.max_len': spec['length']})
  task = tasks.get(config)
  m, length, batch_size = config.model, task.seq_len, config.batch_size
  if length != spec['length']:
    raise ValueError(f'an image task has {length} tokens per example, not {spec["length"]}')
  record(batch=batch_size, num_layers=m.num_layers, dim=m.dim, heads=m.num_heads,
         mlp_dim=m.mlp_dim, dtype=m.compute_dtype)
  run = Run(config, steps=1000, task=task)
  state = run.state
  del run.state
  # Random bytes: the step's cost does not depend on the text (windows hold T + 1 tokens).
  tokens = np.random.default_rng(0).integers(0, m.vocab_size,
                                             (batch_size, length + (1 if windows else 0)),
                                             dtype=np.int32)
  batch = run.to_global({'tokens': tokens})

  def step():
    nonlocal state
    state, metrics = run.train_step(state, batch)  # the state is donated: keep the new one
    jax.block_until_ready((state, metrics))

  t = time.perf_counter()
  step()
  first_s = time.perf_counter() - t
  seconds, times = median_time(step, spec['repeats'])
  record(first_step_s=first_s, step_s=seconds, step_times=times,
         tokens_per_s=batch_size * length / seconds)
  del state  # free the model before the mixer alone is measured

  alone = dict(impl=m.mixer, options=resolve_mixer_options(m), mode='causal', length=length,
               batch=batch_size, heads=m.num_heads, head_dim=m.dim // m.num_heads,
               dtype=m.compute_dtype, repeats=spec['repeats'], phases=('fwdbwd',))
  fields = {}
  jax_cases.measure(alone, lambda **f: fields.update(f))
  record(mixer_fwdbwd_s=fields['fwdbwd_s'],
         mixer_share=m.num_layers * fields['fwdbwd_s'] / seconds)
