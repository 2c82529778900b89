"""A task defined outside the project's tasks/ package (config.task='tests.toy_task'):
classify sequences of 8 tokens by whether token 0 is below 4, with any bidirectional mixer."""
from __future__ import annotations

import grain
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mixers
from mixers.layers import linear
from tasks.base import Task as BaseTask, resolve_mixer_options

LENGTH, VOCAB, CLASSES = 8, 8, 2


class Classifier(nnx.Module):
  def __init__(self, dim, mixer, options, rngs):
    self.embed = nnx.Embed(VOCAB, dim, rngs=rngs)
    self.mixer = mixers.build(mixer, dim=dim, num_heads=2, max_len=LENGTH, causal=False,
                              rngs=rngs, **options)
    self.head = linear(dim, CLASSES, ('embed', None), rngs=rngs)

  def __call__(self, tokens, rng=None):
    x = self.embed(tokens)
    return self.head(jnp.mean(x + self.mixer(x, rng=rng), axis=1))


def examples(split: str, n: int):
  rng = np.random.default_rng({'train': 0, 'valid': 1}[split])
  tokens = rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int32)
  return tokens, (tokens[:, 0] < VOCAB // 2).astype(np.int32)


class Task(BaseTask):
  unit = 'accuracy'

  def build_model(self, rngs):
    m = self.config.model
    return Classifier(m.dim, m.mixer, resolve_mixer_options(m), rngs)

  def train_iterator(self):
    tokens, labels = examples('train', 256)
    ds = (grain.MapDataset.source(list(zip(tokens, labels))).shuffle(seed=self.config.seed)
          .repeat(None).batch(self.config.batch_size)
          .map(lambda b: {'tokens': b[0], 'label': b[1]}))
    return iter(ds.to_iter_dataset())

  def steps_per_epoch(self):
    return 256 // self.config.batch_size

  def eval_batches(self, split, max_batches=None):
    tokens, labels = examples(split, 20)
    b = self.config.batch_size
    for start in range(0, len(tokens), b)[:max_batches]:
      rows = slice(start, start + b)
      pad = b - len(tokens[rows])
      yield {'tokens': np.pad(tokens[rows], ((0, pad), (0, 0))),
             'label': np.pad(labels[rows], (0, pad)),
             'mask': np.pad(np.ones(b - pad, np.float32), (0, pad))}

  def logits(self, model, batch):
    return model(batch['tokens'])

  def loss(self, model, batch, rng):
    logits = model(batch['tokens'], rng=rng)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, {'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}


def config(mixer: str = 'softmax'):
  from configs.common import base_config, mixer_table
  c = base_config()
  c.task = 'tests.toy_task'
  c.data = dict(name='toy')
  c.model = dict(mixer=mixer, dim=16, compute_dtype='float32')
  c.model.mixer_options = mixer_table({})
  c.batch_size, c.num_steps, c.checkpoint_every, c.log_every = 8, 2, 2, 1
  c.optim.update(warmup_steps=1)
  c.evals.valid = dict(type='accuracy', every=1, split='valid', top_k=(1, 2))
  c.best_metric, c.best_mode = 'valid/top1', 'max'
  return c
