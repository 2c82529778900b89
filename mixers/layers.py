"""Small building blocks shared by mixers and backbones: parameters carry logical axis names.

Logical names used across the project (the config maps them to mesh axes):
  'embed' model width, 'heads' the concatenated heads' width, 'mlp' the MLP hidden
  width, 'vocab' the token vocabulary, 'length' a position axis.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax
from flax import nnx


@contextlib.contextmanager
def sharding_scope() -> Iterator[None]:
  """Creates parameters sharded by their logical axes inside a mesh, unsharded outside one.

  nnx.with_partitioning shards eagerly, which needs a mesh; building outside a training
  run (tests, notebooks, benchmarks) has none, so eager sharding is off there.
  """
  no_mesh = jax.sharding.get_abstract_mesh().empty
  with nnx.use_eager_sharding(False) if no_mesh else contextlib.nullcontext():
    yield


def linear(din: int, dout: int, axes: tuple[str | None, str | None], *, rngs: nnx.Rngs,
           use_bias: bool = True, kernel_init=nnx.initializers.lecun_normal()) -> nnx.Linear:
  return nnx.Linear(
      din, dout, use_bias=use_bias, rngs=rngs,
      kernel_init=nnx.with_partitioning(kernel_init, axes),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)))


def layer_norm(dim: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      dim, rngs=rngs,
      scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ('embed',)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ('embed',)))
