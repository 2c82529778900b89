"""Long Range Arena (Tay et al. 2021): five classification tasks, any registered mixer in
bidirectional mode, reported as accuracy.

config.data.name picks the task: 'listops' (the release's TSVs, or data.source='generated'
for trees of our own generator), 'text' (IMDB bytes), 'retrieval' (AAN pairs through the
dual encoder), 'image' (grey CIFAR-10), 'pathfinder' (Pathfinder-32 'hard'). The model is
models/lra.py's Classifier or DualEncoder; token 0 is padding for the text tasks (left out
of mean pooling), pixels have none.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax.numpy as jnp
import numpy as np
import optax

from data.lra import image, listops, pathfinder, pipeline, retrieval, text
from models.blocks import stack_options
from models.lra import Classifier, DualEncoder
from tasks.base import Task as BaseTask, resolve_mixer_options

SPLITS = ('train', 'valid', 'test')


@dataclasses.dataclass(frozen=True)
class Spec:
  vocab_size: int
  num_classes: int
  padded: bool   # token 0 is padding
  pair: bool     # two texts per example (the dual encoder)
  read: Callable  # (config.data, split) -> a random-access source of {'tokens', 'label'}
  length: Callable = lambda cfg: cfg.max_length  # tokens per text, from config.data


def _listops(cfg, split):
  if cfg.source == 'release':
    return listops.read_release(cfg.path, split, cfg.max_length)
  if cfg.source == 'generated':
    return _generated_listops(cfg)[split]
  raise ValueError(f"data.source must be 'release' or 'generated' for ListOps, got "
                   f'{cfg.source!r}')


def _generated_listops(cfg):
  g = cfg.generator
  sizes = {'train': g.num_train, 'valid': g.num_valid, 'test': g.num_test}
  return _generated_cache(tuple(sorted(sizes.items())), cfg.seed, cfg.max_length, g.min_length,
                          g.max_length, g.max_depth, g.max_args)


@functools.lru_cache(maxsize=2)
def _generated_cache(sizes, seed, length, min_length, max_length, max_depth, max_args):
  print(f'Generating ListOps ({dict(sizes)} trees of {min_length}-{max_length} tokens, depth '
        f'<= {max_depth}, seed {seed})...', flush=True)
  return listops.generate_splits(dict(sizes), seed=seed, length=length, min_length=min_length,
                                 max_length=max_length, max_depth=max_depth, max_args=max_args)


def _text(cfg, split):
  if cfg.format == 'aclimdb':
    return text.read_aclimdb(cfg.path, split, cfg.max_length)
  if cfg.format == 'tfds':
    return text.read_tfds(cfg.tfds_data_dir, split, cfg.max_length)
  raise ValueError(f"data.format must be 'aclimdb' or 'tfds' for the text task, got "
                   f'{cfg.format!r}')


TASKS = {
    'listops': Spec(len(listops.VOCAB), 10, True, False, _listops),
    'text': Spec(257, 2, True, False, _text),
    'retrieval': Spec(257, 2, True, True,
                      lambda cfg, split: retrieval.read_release(cfg.path, split, cfg.max_length)),
    'image': Spec(256, 10, False, False, image.read, lambda cfg: 32 * 32),
    'pathfinder': Spec(256, 2, False, False, lambda cfg, split: pathfinder.read_release(
        cfg.path, split, seed=cfg.seed, resolution=cfg.resolution, difficulty=cfg.difficulty),
        lambda cfg: cfg.resolution ** 2),
}


class Task(BaseTask):
  unit = 'accuracy'

  def __init__(self, config):
    super().__init__(config)
    if config.data.name not in TASKS:
      raise ValueError(f'unknown LRA task data.name={config.data.name!r}; known: '
                       f'{", ".join(TASKS)}')
    self.spec = TASKS[config.data.name]

  @functools.cache
  def split(self, name: str):
    if name not in SPLITS:
      raise ValueError(f'unknown split {name!r}; LRA splits: {SPLITS}')
    return self.spec.read(self.config.data, name)

  @property
  def length(self) -> int:
    return self.spec.length(self.config.data)

  def build_model(self, rngs):
    m = self.config.model
    kwargs = dict(vocab_size=self.spec.vocab_size, num_classes=self.spec.num_classes,
                  head_dim=m.head_dim, dim=m.dim, num_layers=m.num_layers,
                  num_heads=m.num_heads, mlp_dim=m.mlp_dim, length=self.length,
                  mixer=m.mixer, mixer_options=resolve_mixer_options(m), pooling=m.pooling,
                  position=m.position, dropout_rate=m.dropout_rate, rngs=rngs,
                  **stack_options(m))
    if self.spec.pair:
      return DualEncoder(interaction=m.interaction, **kwargs)
    return Classifier(**kwargs)

  # -- data --
  def train_iterator(self):
    c = self.config
    return pipeline.train_dataset(self.split('train'), c.batch_size, c.seed)

  def steps_per_epoch(self) -> int:
    return max(1, len(self.split('train')) // self.config.batch_size)

  def eval_batches(self, split, max_batches=None):
    return pipeline.eval_batches(self.split(split), self.config.batch_size, max_batches)

  def example_batch(self, batch_size, rng):
    shape = (batch_size, 2, self.length) if self.spec.pair else (batch_size, self.length)
    return {'tokens': rng.integers(0, self.spec.vocab_size, shape, dtype=np.int32),
            'label': rng.integers(0, self.spec.num_classes, batch_size, dtype=np.int32)}

  # -- loss and hooks --
  def logits(self, model, batch, rng=None):
    tokens = batch['tokens']
    mask = (tokens != 0) if self.spec.padded else None
    return model(tokens, mask, rng=rng)

  def loss(self, model, batch, rng):
    logits = self.logits(model, batch, rng)
    labels = batch['label']
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, {'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)}
