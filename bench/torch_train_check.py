"""Checks that the PyTorch peer of the train step (bench/torch_train.py) is our causal LM: our
model's parameters copied into it give the same logits. Needs torch (.venv-bench):

  .venv-bench/bin/python -m bench.torch_train_check
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import tasks
from bench import lm_spec, torch_train
from bench.train_cases import load_config

TINY = {'model.num_layers': 2, 'model.dim': 32, 'model.num_heads': 4, 'model.mlp_dim': 48,
        'model.max_len': 24, 'data.seq_len': 24, 'batch_size': 2}


def copy_into(peer: torch_train.CausalLM, ours) -> None:
  """Our CausalLM's (looped, softmax) parameters into the PyTorch model, kernels transposed."""
  get = lambda v: torch.from_numpy(np.array(v[...]))
  def linear(t, j):
    t.weight.data, t.bias.data = get(j.kernel).T.contiguous(), get(j.bias)
  def norm(t, j):
    t.weight.data, t.bias.data = get(j.scale), get(j.bias)
  peer.embed.weight.data, peer.pos.data = get(ours.embed.embedding), get(ours.pos)
  for tb, jb in zip(peer.blocks, ours.blocks.layers):
    norm(tb.norm1, jb.norm1)
    norm(tb.norm2, jb.norm2)
    for name in ('q', 'k', 'v', 'out'):
      linear(getattr(tb, name), getattr(jb.mixer, name))
    linear(tb.up, jb.mlp.up)
    linear(tb.down, jb.mlp.down)
  norm(peer.norm, ours.norm)
  linear(peer.head, ours.head)


def main() -> None:
  config = load_config('configs/enwik8.py:mixer=softmax', TINY)
  ours = tasks.get(config).build_model(nnx.Rngs(0))
  peer = torch_train.CausalLM(lm_spec.model_spec(config), TINY['model.max_len']).eval()
  copy_into(peer, ours)
  tokens = np.random.default_rng(0).integers(0, 256, (2, TINY['data.seq_len']), dtype=np.int32)
  want = np.asarray(ours(jnp.asarray(tokens)))
  got = peer(torch.from_numpy(tokens).long()).detach().numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  print(f'same logits (max |difference| {np.abs(got - want).max():.1e}, '
        f'max |logit| {np.abs(want).max():.2f})')


if __name__ == '__main__':
  main()
