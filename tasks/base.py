"""The task interface: the model, the data and the loss of what a config trains.

The training loop, the evaluators and the bench know a task only through these
methods; nothing outside a task's module asks which dataset it is. Batches are
dicts of this host's numpy rows; evaluation batches carry a 'mask' (padding rows
and positions are 0, so whole splits are covered exactly).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.flops import FlopsUnknown


class Task:
  unit: str = 'loss'  # what the task reports (e.g. 'bits/char'); evaluators name their values

  def __init__(self, config):
    self.config = config

  # -- the model -----------------------------------------------------------------------
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    raise NotImplementedError

  # -- throughput: the training log's <example_unit>/s and MFU ---------------------------
  example_unit: str = 'examples'  # what one example counts in: 'tokens' (text), 'images', ...

  def units_per_example(self) -> int:
    """example_units in one training example (a text window: its T tokens; an image: 1)."""
    return 1

  def train_flops(self, batch_size: int) -> float:
    """Model FLOPs of one training step on batch_size examples (models/flops.py); raises
    FlopsUnknown when they are not known (MFU is then omitted)."""
    raise FlopsUnknown(f'FLOPs unknown for task {type(self).__name__}: MFU omitted')

  # -- the data --------------------------------------------------------------------------
  def train_iterator(self):
    """Infinite iterator of this host's training batches with get_state/set_state."""
    raise NotImplementedError

  def steps_per_epoch(self) -> int:
    raise NotImplementedError

  def eval_batches(self, split: str, max_batches: int | None = None):
    """This host's masked batches covering `split` (or its first max_batches batches)."""
    raise NotImplementedError

  def example_batch(self, batch_size: int, rng) -> dict:
    """A training batch of random values with the real keys, shapes and dtypes (rng: a numpy
    Generator): the bench compiles and times the train step on it without reading data."""
    raise NotImplementedError

  # -- the loss -----------------------------------------------------------------------
  def loss(self, model, batch, rng: jax.Array | None) -> tuple[jax.Array, dict]:
    """(scalar loss to minimise, dict of scalar metrics to log); rng is None in evaluation."""
    raise NotImplementedError

  def loss_weight(self, batch) -> jax.Array:
    """What `loss` is a mean over in this batch: its mask's sum if it has one, else its rows.
    Gradient accumulation weights each micro-batch's loss by it, so the accumulated loss is the
    whole batch's mean. A task whose loss averages over something else overrides it."""
    if 'mask' in batch:
      return jnp.sum(batch['mask'])
    return jnp.asarray(len(next(iter(batch.values()))), jnp.float32)

  # -- hooks the evaluators call (a task implements those its config's evaluators use) --
  def nll(self, model, batch) -> tuple[jax.Array, jax.Array]:
    """'bits': summed negative log-likelihood (nats) of the unmasked tokens and their count."""
    raise NotImplementedError(f'{type(self).__name__} has no per-token likelihood')

  def logits(self, model, batch) -> jax.Array:
    """'accuracy': class scores [batch, classes]; the labels are batch['label']."""
    raise NotImplementedError(f'{type(self).__name__} has no class scores')

  def sample_prompt(self, num: int, **options):
    """'samples': (prompt tokens [num, P] int32, number of tokens to generate)."""
    raise NotImplementedError(f'{type(self).__name__} does not sample')

  def render(self, prompt, tokens):
    """'samples': generated tokens [num, N] -> text (str) or images (uint8 [num, H, W, 3])."""
    raise NotImplementedError(f'{type(self).__name__} does not sample')


def resolve_mixer_options(model_cfg) -> dict:
  """The options of model_cfg.mixer from the config's per-mixer table (model.mixer_options.<name>:
  the mixer's defaults with the task's paper settings filled in), so choosing the mixer by
  --config.model.mixer gets the same settings as ':mixer='."""
  table = model_cfg.mixer_options
  return dict(table[model_cfg.mixer]) if model_cfg.mixer in table else {}
