"""What depends on the dataset: the model's shape, the data pipeline and the loss.

Every task so far is next-token prediction over 256 values: bytes (Enwik8, the
built-in text; 'bits/char') or sub-pixels (CIFAR-10, built-in photo crops;
'bits/dim'). Classification will add its own entry.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data import lm as text_data
from data import pixels as image_data
from models import CausalLM

LN2 = float(np.log(2.0))
TEXT, IMAGES = ('enwik8', 'builtin'), ('cifar10', 'builtin_images')


def is_images(config) -> bool:
  if config.data.name not in TEXT + IMAGES:
    raise ValueError(f'unknown data.name {config.data.name!r}; known: {TEXT + IMAGES}')
  return config.data.name in IMAGES


def unit(config) -> str:
  return 'bits/dim' if is_images(config) else 'bits/char'


def seq_len(config) -> int:
  if is_images(config):
    return int(np.prod(config.data.image_shape))
  return config.data.seq_len


def build_model(config, rngs: nnx.Rngs) -> nnx.Module:
  if config.task != 'lm':
    raise ValueError(f"unknown task {config.task!r}; known: 'lm'")
  m = config.model
  if seq_len(config) > m.max_len:
    raise ValueError(f'the data\'s sequence length {seq_len(config)} (data.seq_len or '
                     f'data.image_shape) exceeds model.max_len={m.max_len}')
  return CausalLM(vocab_size=m.vocab_size, dim=m.dim, num_layers=m.num_layers,
                  num_heads=m.num_heads, mlp_dim=m.mlp_dim, max_len=m.max_len, mixer=m.mixer,
                  mixer_options=m.mixer_options.to_dict(), dropout_rate=m.dropout_rate,
                  position=m.position, start_token=is_images(config), rngs=rngs)


def nll(model, batch, rng=None):
  """Summed negative log-likelihood (nats) of the predicted tokens, and their count.

  Text batches are windows of T+1 bytes (predict bytes 1..T); image batches are
  whole images, every sub-pixel predicted behind the model's start token.
  """
  tokens = batch['tokens']
  if model.start is not None:
    inputs, targets = tokens, tokens
  else:
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
  losses = optax.softmax_cross_entropy_with_integer_labels(model(inputs, rng=rng), targets)
  mask = batch.get('mask', jnp.ones_like(losses))
  return jnp.sum(losses * mask), jnp.sum(mask)


def load_split(config, split: str):
  if is_images(config):
    return image_data.load_images(config.data, split)
  return text_data.load_bytes(config.data, split)


def train_iterator(config, data):
  if is_images(config):
    return image_data.train_dataset(data, config.batch_size, config.seed, config.data.max_offset)
  return text_data.train_dataset(data, config.data.seq_len, config.batch_size, config.seed)


def steps_per_epoch(config, data) -> int:
  if is_images(config):
    return max(1, len(data) // config.batch_size)
  return text_data.steps_per_epoch(data, config.data.seq_len, config.batch_size)


def eval_batches(config, data, max_batches=None):
  if is_images(config):
    return image_data.eval_batches(data, config.batch_size, max_batches)
  return text_data.eval_batches(data, config.data.seq_len, config.batch_size, max_batches)
