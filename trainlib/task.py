"""The pieces of a run that depend on the task: model, data and the loss.

Today's task is next-token prediction over bytes ('lm'); the pixel model will
reuse it with 256 sub-pixel tokens, and classification adds its own entry.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data import lm as lm_data
from models import CausalLM

LN2 = float(np.log(2.0))


def build_model(config, rngs: nnx.Rngs) -> nnx.Module:
  if config.task != 'lm':
    raise ValueError(f"unknown task {config.task!r}; known: 'lm'")
  m = config.model
  if config.data.seq_len > m.max_len:
    raise ValueError(f'data.seq_len={config.data.seq_len} exceeds model.max_len={m.max_len}')
  return CausalLM(vocab_size=m.vocab_size, dim=m.dim, num_layers=m.num_layers,
                  num_heads=m.num_heads, mlp_dim=m.mlp_dim, max_len=m.max_len, mixer=m.mixer,
                  mixer_options=m.mixer_options.to_dict(), dropout_rate=m.dropout_rate,
                  position=m.position, rngs=rngs)


def nll(model, batch, rng=None):
  """Summed next-token negative log-likelihood (nats) and the number of predicted tokens."""
  tokens = batch['tokens']
  logits = model(tokens[:, :-1], rng=rng)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
  mask = batch.get('mask', jnp.ones_like(losses))
  return jnp.sum(losses * mask), jnp.sum(mask)


def split_bytes(config, split: str) -> np.ndarray:
  return lm_data.load_bytes(config.data, split)


def train_iterator(config, train_data: np.ndarray):
  return lm_data.train_dataset(train_data, config.data.seq_len, config.batch_size, config.seed)


def steps_per_epoch(config, train_data: np.ndarray) -> int:
  return lm_data.steps_per_epoch(train_data, config.data.seq_len, config.batch_size)


def eval_batches(config, data: np.ndarray, max_batches=None):
  return lm_data.eval_batches(data, config.data.seq_len, config.batch_size, max_batches)


def prompt(config, data: np.ndarray) -> jax.Array:
  return jnp.asarray(data[:config.sample.prompt_len].astype(np.int32))[None]
