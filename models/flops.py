"""Model FLOPs of the backbones: the mixers' (mixers/flops.py) plus the MLPs and the head, per
forward pass; a training step counts 3x (the backward pass multiplies each matmul twice more).
Remat's recomputation is not model work and is not counted (it lowers MFU, as it should)."""
from __future__ import annotations

from mixers.flops import mixer_flops, projections

TRAIN_FACTOR = 3.0  # forward + backward (2x: gradients of the inputs and of the weights)


def stack_flops(*, batch: int, length: int, dim: int, num_layers: int, num_heads: int,
                mlp_dim: int, mixer: str, causal: bool, mixer_options: dict | None = None) -> float:
  """Forward FLOPs of models.blocks.Stack: per layer the mixer and the MLP's two matmuls
  (LayerNorms, residuals and GELU are O(B T dim) and left out, like biases)."""
  per_layer = (mixer_flops(mixer, batch=batch, length=length, dim=dim, num_heads=num_heads,
                           causal=causal, **(mixer_options or {}))
               + projections(batch, length, dim, n=2, out=mlp_dim))
  return num_layers * per_layer


def causal_lm_flops(model_cfg, mixer_options: dict, batch: int, length: int) -> float:
  """Forward FLOPs of models.CausalLM (config.model) on [batch, length] tokens: the stack and
  the [dim, vocab] head (the embedding is a lookup)."""
  m = model_cfg
  return (stack_flops(batch=batch, length=length, dim=m.dim, num_layers=m.num_layers,
                      num_heads=m.num_heads, mlp_dim=m.mlp_dim, mixer=m.mixer, causal=True,
                      mixer_options=mixer_options)
          + projections(batch, length, m.dim, n=1, out=m.vocab_size))
