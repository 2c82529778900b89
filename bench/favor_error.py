"""FAVOR+'s approximation error against exact softmax attention, against m.

  python -m bench.favor_error [--length=1024] [--head_dim=64] [--features=16,64,256,1024]
      [--seeds=32] [--logit_std=0.125]

Mean squared error of the output against exact softmax attention (same q, k, v; the
float64 reference in mixers/references.py), averaged over --seeds independent
projections, causal and bidirectional, for orthogonal and i.i.d. random features
made from the same Gaussian draws (so the two compare pairwise, as in the
Performer paper's Theorem 2). q and k are Gaussian, scaled so the logits
q.k / sqrt(d) have standard deviation --logit_std (FAVOR+'s variance grows with
the query and key norms); prints a Markdown table.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from mixers import references
from performer.attention import favor_attention
from performer.features import random_projection

FLAGS = flags.FLAGS


def errors(length: int, d: int, ms: list[int], seeds: int, logit_std: float) -> dict:
  """{(causal, orthogonal): [mean MSE at each m]} over `seeds` projections."""
  rng = np.random.default_rng(0)
  # q, k ~ N(0, logit_std): the logits q.k / sqrt(d) have standard deviation logit_std.
  q, k, v = (jnp.asarray(rng.standard_normal((1, length, 1, d)) * scale, jnp.float32)
             for scale in (logit_std ** 0.5, logit_std ** 0.5, 1.0))
  out = {}
  for causal in (False, True):
    exact = references.softmax_attention(q, k, v, causal=causal)
    for orthogonal in (True, False):
      for m in ms:
        mse = jax.jit(lambda key: jnp.mean((favor_attention(
            q, k, v, random_projection(key, m, d, orthogonal=orthogonal),
            causal=causal) - exact) ** 2))
        keys = jax.random.split(jax.random.key(m), seeds)
        out.setdefault((causal, orthogonal), []).append(
            float(np.mean([mse(key) for key in keys])))
  return out


def main(argv):
  del argv
  ms = [int(m) for m in FLAGS.features]
  table = errors(FLAGS.length, FLAGS.head_dim, ms, FLAGS.seeds, FLAGS.logit_std)
  print(f'MSE against exact softmax attention, L={FLAGS.length}, d={FLAGS.head_dim}, '
        f'logit std {FLAGS.logit_std:g}, mean over {FLAGS.seeds} projections\n')
  print('| mode | features | ' + ' | '.join(f'm={m}' for m in ms) + ' |')
  print('|---|---|' + '---|' * len(ms))
  for (causal, orthogonal), row in table.items():
    print(f'| {"causal" if causal else "bidirectional"} | '
          f'{"orthogonal" if orthogonal else "i.i.d."} | '
          + ' | '.join(f'{e:.2e}' for e in row) + ' |')


if __name__ == '__main__':
  flags.DEFINE_integer('length', 1024, 'Sequence length.')
  flags.DEFINE_integer('head_dim', 64, 'Width of q, k, v (one head).')
  flags.DEFINE_list('features', ['16', '64', '256', '1024'], 'Numbers of random features m.')
  flags.DEFINE_integer('seeds', 32, 'Independent projections per point.')
  flags.DEFINE_float('logit_std', 0.125, 'Standard deviation of the logits q.k / sqrt(d).')
  app.run(main)
