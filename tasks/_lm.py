"""What the byte LM and the pixel LM share: a causal token model over 256 values and its NLL."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from evaluators.units import bits
from mixers import sequence_parallel
from models import CausalLM
from models.blocks import stack_options
from models.flops import TRAIN_FACTOR, causal_lm_flops
from tasks.base import Task, resolve_mixer_options


class CausalLMTask(Task):
  example_unit = 'tokens'
  start_token = False  # True: every token is predicted, the first behind a learned start vector
  sources: dict = {}   # data.name -> reader; each task module lists its own

  def __init__(self, config):
    super().__init__(config)
    if config.data.name not in self.sources:
      raise ValueError(f'unknown data.name {config.data.name!r} for task {config.task}; known: '
                       f'{", ".join(self.sources)}')

  @property
  def seq_len(self) -> int:
    """Tokens the model reads per example."""
    raise NotImplementedError

  def units_per_example(self) -> int:
    return self.seq_len

  def example_batch(self, batch_size, rng):
    width = self.seq_len + (0 if self.start_token else 1)  # text windows hold T + 1 tokens
    return {'tokens': rng.integers(0, self.config.model.vocab_size, (batch_size, width),
                                   dtype=np.int32)}

  def train_flops(self, batch_size):
    m = self.config.model
    return TRAIN_FACTOR * causal_lm_flops(m, resolve_mixer_options(m), batch_size, self.seq_len)

  def build_model(self, rngs):
    m = self.config.model
    if self.seq_len > m.max_len:
      raise ValueError(f'the data\'s sequence length {self.seq_len} exceeds model.max_len='
                       f'{m.max_len}; raise --config.model.max_len or shorten the data')
    return CausalLM(vocab_size=m.vocab_size, dim=m.dim, num_layers=m.num_layers,
                    num_heads=m.num_heads, mlp_dim=m.mlp_dim, max_len=m.max_len, mixer=m.mixer,
                    mixer_options=resolve_mixer_options(m), dropout_rate=m.dropout_rate,
                    position=m.position, start_token=self.start_token, rngs=rngs,
                    **stack_options(m))

  def _token_losses(self, model, batch, rng=None):
    """Text batches are windows of T+1 tokens (predict 1..T); with a start token, all T."""
    tokens = batch['tokens']
    inputs, targets = (tokens, tokens) if self.start_token else (tokens[:, :-1], tokens[:, 1:])
    losses = optax.softmax_cross_entropy_with_integer_labels(model(inputs, rng=rng), targets)
    # Losses and their token counts stay split along the length like the activations; the
    # sums below reduce over the sequence devices.
    mask = batch.get('mask', jnp.ones_like(losses))
    return sequence_parallel.constrain(losses), sequence_parallel.constrain(mask)

  def nll(self, model, batch):
    losses, mask = self._token_losses(model, batch)
    return jnp.sum(losses * mask), jnp.sum(mask)

  def loss(self, model, batch, rng):
    losses, mask = self._token_losses(model, batch, rng)
    loss = jnp.sum(losses * mask) / jnp.sum(mask)
    return loss, {'bits': bits(loss)}
