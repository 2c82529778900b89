"""The causal byte LM's architecture and optimizer as plain values, and its parameter count in
closed form: what the PyTorch peer of the train step (bench/torch_train.py, which imports no
JAX) builds, read from the resolved task config by the parent."""
from __future__ import annotations

import math

MODEL_KEYS = ('vocab_size', 'dim', 'num_layers', 'num_heads', 'mlp_dim', 'dropout_rate',
              'position', 'compute_dtype')
OPTIM_KEYS = ('lr', 'schedule', 'warmup_steps', 'b1', 'b2', 'eps', 'weight_decay', 'grad_clip')


def model_spec(config) -> dict:
  """{model sizes..., 'batch_size', 'optim': {...}} of a resolved causal-LM task config."""
  return {**{k: config.model[k] for k in MODEL_KEYS}, 'batch_size': config.batch_size,
          'optim': {k: config.optim[k] for k in OPTIM_KEYS}}


def param_count(m: dict, max_len: int) -> int:
  """Parameters of models.causal_lm.CausalLM with softmax blocks (no start token): token
  embedding, learned positions, per block two LayerNorms, q/k/v/out and the MLP (all with
  biases), the final LayerNorm and an untied head with bias."""
  d, f, v = m['dim'], m['mlp_dim'], m['vocab_size']
  block = 2 * 2 * d + 4 * (d * d + d) + (d * f + f) + (f * d + d)
  positions = max_len * d if m['position'] == 'learned' else 0
  return v * d + positions + m['num_layers'] * block + 2 * d + (d * v + v)


# Steps the benchmarks' learning-rate schedule spans (the JAX step's Run and the PyTorch peer).
SCHEDULE_STEPS = 1000


def learning_rate(o: dict, step: int, total_steps: int = SCHEDULE_STEPS) -> float:
  """trainlib.optim.schedule as a plain function: linear warmup to o['lr'], then cosine to 0 at
  total_steps, Vaswani et al.'s inverse square root, or constant."""
  warm = max(o['warmup_steps'], 1)
  if step < o['warmup_steps']:
    return o['lr'] * step / warm
  s = step - o['warmup_steps']
  if o['schedule'] == 'cosine':
    span = max(total_steps - o['warmup_steps'], 1)
    return o['lr'] * 0.5 * (1 + math.cos(math.pi * min(s, span) / span))
  if o['schedule'] == 'rsqrt':
    return o['lr'] / math.sqrt((s + warm) / warm)
  if o['schedule'] == 'constant':
    return o['lr']
  raise ValueError(f"optim.schedule must be 'cosine', 'rsqrt' or 'constant', got {o['schedule']!r}")
