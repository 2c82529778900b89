"""Autoregressive image modelling (CIFAR-10, the built-in photo crops), reported in bits/dim.

Images are token sequences: raster order over pixels, R, G, B consecutive (H*W*3
tokens of 256 values); the model has a learned start vector, so every sub-pixel is
predicted. config.data.name picks the source: 'cifar10' (the python archive at
data.path, or TFDS 'cifar10' with data.format='tfds'; its test split serves as
'valid', CIFAR-10 having none) or 'builtin_images' (crops of scikit-learn's photos).
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from data import pixels as pipeline
from data.builtin_images import Crops
from data.cifar10 import TfdsImages, read_cifar10_archive
from tasks._lm import CausalLMTask


def _cifar10(cfg, split):
  split = 'test' if split in ('valid', 'test') else 'train'
  if cfg.format == 'archive':
    return read_cifar10_archive(cfg.path, split)[0]
  if cfg.format == 'tfds':
    return TfdsImages('cifar10', split, cfg.tfds_data_dir)
  raise ValueError(f"data.format must be 'archive' or 'tfds', got {cfg.format!r}")


SOURCES = {
    'cifar10': _cifar10,
    'builtin_images': lambda cfg, split: Crops(
        split, cfg.image_shape[0], cfg.num_train if split == 'train' else cfg.num_valid),
}


class Task(CausalLMTask):
  unit = 'bits/dim'
  example_unit = 'images'
  start_token = True
  sources = SOURCES


  @functools.cache
  def split(self, name: str):
    """A random-access source of uint8 [H, W, 3] images."""
    return self.sources[self.config.data.name](self.config.data, name)

  @property
  def seq_len(self) -> int:
    return int(np.prod(self.config.data.image_shape))

  def units_per_example(self) -> int:
    return 1

  def train_iterator(self):
    c = self.config
    return pipeline.train_dataset(self.split('train'), c.batch_size, c.seed, c.data.max_offset)

  def steps_per_epoch(self) -> int:
    return max(1, len(self.split('train')) // self.config.batch_size)

  def eval_batches(self, split, max_batches=None):
    return pipeline.eval_batches(self.split(split), self.config.batch_size, max_batches)

  def sample_prompt(self, num):
    return jnp.zeros((num, 1), jnp.int32), self.seq_len  # the prompt's value is unused

  def render(self, prompt, tokens):
    return tokens.reshape(len(tokens), *self.config.data.image_shape).astype(np.uint8)
