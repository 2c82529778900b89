"""Samples drawn through the model's decode step (or its parallel fallback): text or images.

The task gives the prompt and renders the tokens (`sample_prompt`, `render`); options
other than num, temperature and seed go to the task's sample_prompt. The value yielded
is a str or a uint8 image batch, which the writer stores as <name>.txt or a PNG grid
(and in TensorBoard).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from models import generate


class Evaluator:
  reads_split = False

  def __init__(self, task, run, *, num: int = 1, temperature: float = 1.0, seed: int = 1,
               **prompt_options):
    self.task, self.num, self.seed, self.prompt_options = task, num, seed, prompt_options

    @functools.partial(jax.jit, static_argnums=3)
    def gen(params, buffers, prompt, num_tokens, key):
      return generate(run.model(params, buffers), prompt, num_tokens, key, temperature)
    self._gen = gen

  def run(self, state, final: bool = False):
    prompt, num_tokens = self.task.sample_prompt(self.num, **self.prompt_options)
    out = self._gen(state['params'], state['buffers'], prompt, num_tokens,
                    jax.random.key(self.seed))
    yield 'sample', self.task.render(np.asarray(prompt), np.asarray(out))
