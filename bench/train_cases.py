"""Worker side of bench.train_step: a task's jitted train step (trainlib's, as train.py
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
from trainlib import mesh as mesh_lib
from trainlib import state as state_lib
from trainlib import task


def load_config(path: str, overrides: dict):
  """The config file (with its ':arg') as train.py reads it, then dotted-key overrides."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=values)
  values(['bench', f'--config={path}'])
  return override(values.config, overrides)


def measure(spec: dict, record) -> None:
  config = load_config(spec['config'], spec['overrides'])
  images = task.is_images(config)
  if not images:  # text: the window length is the bench's; an image's is its token count
    override(config, {'data.seq_len': spec['length'], 'model.max_len': spec['length']})
  m, length, batch_size = config.model, task.seq_len(config), config.batch_size
  if length != spec['length']:
    raise ValueError(f'an image task has {length} tokens per example, not {spec["length"]}')
  record(batch=batch_size, num_layers=m.num_layers, dim=m.dim, heads=m.num_heads,
         mlp_dim=m.mlp_dim, dtype=m.compute_dtype)
  _, batch_sharding, _, state, train_step = state_lib.setup(config, total_steps=1000)
  # Random bytes: the step's cost does not depend on the text.
  tokens = np.random.default_rng(0).integers(0, m.vocab_size,
                                             (batch_size, length + (0 if images else 1)),
                                             dtype=np.int32)
  batch = mesh_lib.to_global({'tokens': tokens}, batch_sharding)

  def step():
    nonlocal state
    state, metrics = train_step(state, batch)  # the state is donated: keep the new one
    jax.block_until_ready((state, metrics))

  t = time.perf_counter()
  step()
  first_s = time.perf_counter() - t
  seconds, times = median_time(step, spec['repeats'])
  record(first_step_s=first_s, step_s=seconds, step_times=times,
         tokens_per_s=batch_size * length / seconds)
  del state  # free the model before the mixer alone is measured

  alone = dict(impl=m.mixer, options=m.mixer_options.to_dict(), mode='causal', length=length,
               batch=batch_size, heads=m.num_heads, head_dim=m.dim // m.num_heads,
               dtype=m.compute_dtype, repeats=spec['repeats'], phases=('fwdbwd',))
  fields = {}
  jax_cases.measure(alone, lambda **f: fields.update(f))
  record(mixer_fwdbwd_s=fields['fwdbwd_s'],
         mixer_share=m.num_layers * fields['fwdbwd_s'] / seconds)
