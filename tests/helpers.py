"""Shared test fixtures: a tiny enwik8 zip in the real format and a shrunk config."""
from __future__ import annotations

import json
import os
import zipfile


import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from configs import enwik8 as enwik8_config
from configs.common import override
from trainlib.checkpoints import Checkpoints
from trainlib.run import Run

TINY_BYTES = 40_000


def tiny_text(n: int = TINY_BYTES) -> bytes:
  """Deterministic, learnable text: repeated sentences with varying numbers."""
  words = [f'the {w} number {i % 97} is {"odd" if i % 2 else "even"}. '
           for i, w in zip(range(n), ['cat', 'dog', 'bird', 'fish'] * n)]
  return ''.join(words).encode()[:n]


def write_enwik8_zip(path, payload: bytes) -> str:
  with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
    zf.writestr('enwik8', payload)
  return str(path)


def tiny_config(zip_path: str, **overrides):
  """The Enwik8 config shrunk to seconds: 2 layers, d 32, T 32, batch 8."""
  c = enwik8_config.get_config('mixer=softmax')
  c.data.path, c.data.expected_bytes, c.data.seq_len = zip_path, TINY_BYTES, 32
  c.model.update(dim=32, num_layers=2, num_heads=4, mlp_dim=64, max_len=32, dropout_rate=0.1)
  c.batch_size, c.num_steps = 8, 12
  c.optim.update(lr=3e-3, schedule='cosine', warmup_steps=2)
  c.log_every, c.checkpoint_every = 1, 3
  c.evals.valid.update(every=6, max_batches=2)
  c.evals.sample.num_tokens = 8
  return override(c, overrides)


def final_params(config, workdir):
  """(step, state) of the workdir's newest checkpoint."""
  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'))
  step, state, _ = ckpt.restore(Run(config, steps=1).state)
  ckpt.close()
  return step, state


def assert_same_end(config, reference, workdir, result):
  """The run in workdir (its result dict) ended exactly as the reference (workdir, result):
  the same last step, bitwise the same state and final validation bits."""
  ref_dir, ref = reference
  ref_step, ref_state = final_params(config, ref_dir)
  step, state = final_params(config, workdir)
  assert step == ref_step
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert result['valid']['bits'] == ref['valid']['bits']


def on_each_batch(hook, task_class=None):
  """Makes the task's training iterators (the text task's by default) call hook(n) before
  handing out their n-th batch (n from 1), e.g. to slow a run down, signal or kill it;
  returns the undo."""
  if task_class is None:
    from tasks import text_lm
    task_class = text_lm.Task
  real = task_class.train_iterator

  def train_iterator(self):
    it = real(self)

    class Hooked:
      n = 0

      def __next__(self):
        self.n += 1
        hook(self.n)
        return next(it)
      get_state, set_state = it.get_state, it.set_state
    return Hooked()
  task_class.train_iterator = train_iterator
  return lambda: setattr(task_class, 'train_iterator', real)


def read_metrics(workdir, split='train'):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['split'] == split]


def parse(*argv):
  """The config as train.py's flags read it from this command line."""
  # config_flags finds the --config.* overrides in the argv it is given at definition.
  argv = ['prog', *argv]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  fv(argv)
  return fv.config
