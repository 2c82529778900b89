"""Pieces every task config shares: strict `:arg` parsing and the run/optimizer/mesh defaults."""
from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, defaults: dict) -> ml_collections.ConfigDict:
  """'mixer=aft_local,size=24x256,quick' -> values; an unknown key is an error.

  A bare word sets a boolean default to True.
  """
  out = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}; known: {sorted(defaults)}')
    if isinstance(defaults[key], bool):
      if sep and value.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'config argument {key!r} is a boolean, got {value!r}')
      out[key] = (not sep) or value.lower() in ('true', '1')
    elif not sep:
      raise ValueError(f'config argument {key!r} needs a value ({key}=...)')
    else:
      out[key] = type(defaults[key])(value)
  return ml_collections.ConfigDict(out)


def base_config() -> ml_collections.ConfigDict:
  """Run settings shared by every task; task configs fill in data, model and optim."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 128
  c.num_epochs = 1
  c.num_steps = ml_collections.config_dict.placeholder(int)  # overrides num_epochs when set
  c.log_every = 50
  c.eval_every = 1000
  c.eval_batches = ml_collections.config_dict.placeholder(int)  # None: the whole split
  c.eval_at_start = False
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.optim = ml_collections.ConfigDict(dict(
      lr=3e-3, schedule='rsqrt', warmup_steps=4000, b1=0.9, b2=0.98, eps=1e-9,
      weight_decay=0.1, grad_clip=1.0))
  # Data parallel over every device; FSDP is mesh.data=1, mesh.fsdp=-1.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  # Logical axis name -> mesh axes (None: replicated).
  c.axis_rules = (('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('heads', 'tensor'),
                  ('mlp', 'tensor'), ('vocab', 'tensor'), ('length', None))
  # Text: prompt_len validation bytes then num_tokens sampled; images: num_images at the end.
  c.sample = ml_collections.ConfigDict(dict(prompt_len=32, num_tokens=200, temperature=0.8,
                                            num_images=0))
  return c


def override(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets dotted keys ('model.num_layers': 2, ...) as --config.model.num_layers=2 would."""
  for key, value in values.items():
    *parents, leaf = key.split('.')
    target = config
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config
