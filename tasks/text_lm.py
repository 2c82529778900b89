"""Byte-level language modelling (Enwik8, the built-in text), reported in bits/char.

config.data.name picks the source: 'enwik8' (the standard zip at data.path; first
90M bytes train, next 5M valid, last 5M test), 'builtin' (this Python's standard
library sources, no download) or 'text' (the user's file, folder or zip at data.path,
split by data.fractions, or data.train_path/valid_path/test_path). Examples are
windows of data.seq_len + 1 bytes.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from data import lm as pipeline
from data.builtin_text import read_builtin_text
from data.enwik8 import read_enwik8
from data.text_files import read_text
from tasks._lm import CausalLMTask

SOURCES = {
    'enwik8': lambda cfg: read_enwik8(cfg.path, cfg.expected_bytes),
    'builtin': lambda cfg: read_builtin_text(),
    'text': lambda cfg: read_text(
        cfg.path, cfg.fractions, {s: cfg.get(f'{s}_path') for s in ('train', 'valid', 'test')},
        min_bytes=cfg.seq_len + 1),
}


class Task(CausalLMTask):
  unit = 'bits/char'
  sources = SOURCES


  @functools.cached_property
  def _splits(self) -> dict:
    return self.sources[self.config.data.name](self.config.data)

  def split(self, name: str) -> np.ndarray:
    return self._splits[name]

  @property
  def seq_len(self) -> int:
    return self.config.data.seq_len

  def train_iterator(self):
    c = self.config
    return pipeline.train_dataset(self.split('train'), self.seq_len, c.batch_size, c.seed)

  def steps_per_epoch(self) -> int:
    return pipeline.steps_per_epoch(self.split('train'), self.seq_len, self.config.batch_size)

  def eval_batches(self, split, max_batches=None):
    return pipeline.eval_batches(self.split(split), self.seq_len, self.config.batch_size,
                                 max_batches)

  def sample_prompt(self, num, prompt_len: int = 32, num_tokens: int = 200):
    """The first prompt_len validation bytes, for each of num samples, then num_tokens more
    (as many as the model's max_len leaves room for)."""
    prompt = np.asarray(self.split('valid')[:prompt_len], np.int32)
    n = min(num_tokens, self.config.model.max_len - len(prompt) + 1)
    return jnp.asarray(np.tile(prompt, (num, 1))), n

  def render(self, prompt, tokens):
    raw = np.concatenate([prompt[0], tokens[0]]).astype(np.uint8).tobytes()
    return raw.decode('utf-8', errors='replace')
