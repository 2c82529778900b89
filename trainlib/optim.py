"""AdamW with warmup and the run's schedule; weight decay on linear/conv kernels only."""
from __future__ import annotations

import jax
import optax


def schedule(cfg, total_steps: int) -> optax.Schedule:
  """cfg: config.optim. 'cosine' decays to 0 at total_steps; 'rsqrt' is Vaswani et al.'s
  inverse square root after linear warmup (peak lr at the end of warmup)."""
  warm = optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1))
  if cfg.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(cfg.lr, max(total_steps - cfg.warmup_steps, 1))
  elif cfg.schedule == 'rsqrt':
    decay = lambda s: cfg.lr * jax.lax.rsqrt((s + max(cfg.warmup_steps, 1)) / max(cfg.warmup_steps, 1))
  elif cfg.schedule == 'constant':
    decay = optax.constant_schedule(cfg.lr)
  else:
    raise ValueError(f"optim.schedule must be 'cosine', 'rsqrt' or 'constant', got {cfg.schedule!r}")
  return optax.join_schedules([warm, decay], [cfg.warmup_steps])


def _decay_mask(params):
  # Kernels of linear layers (and convolutions) are the only decayed weights; embeddings,
  # position tables, norms and biases are not.
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(getattr(k, 'key', None) == 'kernel' for k in path), params)


def optimizer(cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(cfg, total_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip else optax.identity(),
      optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                  mask=_decay_mask))
  return tx, lr
