"""Pieces every task config shares: strict `:arg` parsing, the run/optimizer/mesh defaults and
the per-mixer option table."""
from __future__ import annotations

import ml_collections

import mixers


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
  # Split each batch into k micro-batches run in sequence, one optimizer update (memory / k).
  c.grad_accum_steps = 1
  # (first, last): a jax.profiler trace of those train steps in <workdir>/profile.
  c.profile_steps = ml_collections.config_dict.placeholder(tuple)
  # Evaluators: config.evals.<name> = dict(type=..., every=<steps; 0: at the end only>, ...).
  c.evals = ml_collections.ConfigDict()
  c.eval_at_start = False
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  # The checkpoint kept as best: '<evaluator>/<value>', lower ('min') or higher ('max') better.
  c.best_metric, c.best_mode = 'valid/loss', 'min'
  # Another run's workdir: a new run starts from its newest parameters (fresh optimizer, step 0).
  c.init_from = ''
  c.optim = ml_collections.ConfigDict(dict(
      lr=3e-3, schedule='rsqrt', warmup_steps=4000, b1=0.9, b2=0.98, eps=1e-9,
      weight_decay=0.1, grad_clip=1.0))
  # Data parallel over every device; FSDP is mesh.data=1, mesh.fsdp=-1; mesh.sequence=n splits
  # each sequence over n devices (mixers with an exact path; see mixers/sequence_parallel.py).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, sequence=1, tensor=1))
  # Logical axis name -> mesh axes (None: replicated): parameters' axes, then activations'.
  c.axis_rules = (('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('heads', 'tensor'),
                  ('mlp', 'tensor'), ('vocab', 'tensor'), ('length', 'sequence'),
                  ('layers', None), ('activation_batch', ('data', 'fsdp')),
                  ('activation_length', 'sequence'), ('activation_embed', None),
                  ('activation_heads', 'tensor'), ('activation_mlp', 'tensor'))
  return c


# How config.model's layers run (models.blocks.Stack): scan_layers stacks them on a 'layers' axis
# under one nnx.scan (compile time flat in depth); remat: 'none', 'full', 'dots' (matmul outputs
# kept) or 'dots_no_batch' recomputes activations in the backward pass. Task configs add these.
LAYOUT = dict(scan_layers=False, remat='none')


class MixerOptions(ml_collections.ConfigDict):
  """One mixer's options in the config; an unknown one is an error that lists them."""

  def _generate_did_you_mean_message(self, request, message=''):
    return f'unknown mixer option {request!r}; its options are: {", ".join(sorted(self))}'


class MixerTable(ml_collections.ConfigDict):
  """model.mixer_options: one MixerOptions per registered mixer."""

  def _generate_did_you_mean_message(self, request, message=''):
    return (f'{request!r} is not a registered mixer (options are set per mixer, e.g. '
            f'--config.model.mixer_options.performer.num_features=128); mixers: '
            f'{", ".join(sorted(self))}')


def mixer_table(presets: dict) -> MixerTable:
  """Every registered mixer's options at their defaults, with the task's paper settings
  (`presets`: {mixer: {option: value}}) filled in. The model takes the row of
  model.mixer, so --config.model.mixer=X gets the same settings as ':mixer=X', and every
  option is settable as --config.model.mixer_options.<mixer>.<option>=..."""
  table = MixerTable()
  for name in mixers.names():
    row = {k: ml_collections.config_dict.placeholder(object) if v is None else v
           for k, v in mixers.option_defaults(name).items()}
    unknown = sorted(set(presets.get(name, {})) - set(row))
    if unknown:
      raise ValueError(f'paper settings for {name!r} name unknown options {unknown}')
    row.update(presets.get(name, {}))
    table[name] = MixerOptions(row)
  return table


def override(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets dotted keys ('model.num_layers': 2, ...) as --config.model.num_layers=2 would."""
  for key, value in values.items():
    *parents, leaf = key.split('.')
    target = config
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config
