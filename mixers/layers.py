"""Small building blocks shared by mixers and backbones: parameters carry logical axis names.

Logical names used across the project (the config maps them to mesh axes):
  'embed' model width, 'heads' the concatenated heads' width, 'mlp' the MLP hidden
  width, 'vocab' the token vocabulary, 'length' a position axis, 'layers' the stacked layers of
  a scanned Stack.
Activations are constrained by their own names ('activation_batch', 'activation_length',
'activation_embed', 'activation_heads', 'activation_mlp'), so tensor parallelism splits the heads
and MLP activations, not only the weights. The sharding is fixed when a module is built inside a
mesh (trainlib.run builds the model there); built outside one, nothing is constrained.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import math

import jax
from flax import nnx
from flax.core import spmd
from jax.sharding import NamedSharding, PartitionSpec as P


@contextlib.contextmanager
def sharding_scope() -> Iterator[None]:
  """Creates parameters sharded by their logical axes inside a mesh, unsharded outside one.

  nnx.with_partitioning shards eagerly, which needs a mesh; building outside a training
  run (tests, notebooks, benchmarks) has none, so eager sharding is off there.
  """
  no_mesh = jax.sharding.get_abstract_mesh().empty
  with nnx.use_eager_sharding(False) if no_mesh else contextlib.nullcontext():
    yield


def activation_sharding(*names: str) -> NamedSharding | None:
  """The sharding of an activation whose axes carry these logical names, by the rules in effect
  (config.axis_rules; a name they lack is replicated); None outside a mesh or when the rules
  name no activation axis (no constraint)."""
  rules = dict(spmd.get_logical_axis_rules())
  if jax.sharding.get_abstract_mesh().empty or not any(n in rules for n in names):
    return None
  spec = P(*(rules.get(n) for n in names))
  try:
    return NamedSharding(jax.sharding.get_mesh(), spec)
  except ValueError:  # built under a trace (nnx.eval_shape): the abstract mesh has the axes
    return NamedSharding(jax.sharding.get_abstract_mesh(), spec)


def constrain(x: jax.Array, sharding: NamedSharding | None) -> jax.Array:
  """x constrained to `sharding` (None: unchanged); an axis whose size the mesh axes do not
  divide (a batch of 1 when sampling) is left replicated."""
  if sharding is None:
    return x
  mesh = sharding.mesh
  spec = []
  for size, axes in zip(x.shape, sharding.spec):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    spec.append(axes if size % math.prod(mesh.shape[a] for a in names) == 0 else None)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))


def sequence_sharding(features: str) -> NamedSharding | None:
  """[batch, length, features] activations, features by the logical name 'activation_<features>'."""
  return activation_sharding('activation_batch', 'activation_length', f'activation_{features}')


class Linear(nnx.Linear):
  """nnx.Linear whose [batch, length, features] outputs are constrained to the sharding of their
  features' activation axis (heads and MLP activations split like their weights)."""

  def __init__(self, *args, out_axis: str | None = None, **kwargs):
    super().__init__(*args, **kwargs)
    self.activation = sequence_sharding(out_axis) if out_axis in ('heads', 'mlp') else None

  def __call__(self, x):
    y = super().__call__(x)
    return constrain(y, self.activation) if y.ndim == 3 else y


def linear(din: int, dout: int, axes: tuple[str | None, str | None], *, rngs: nnx.Rngs,
           use_bias: bool = True, kernel_init=nnx.initializers.lecun_normal()) -> Linear:
  return Linear(
      din, dout, use_bias=use_bias, rngs=rngs, out_axis=axes[1],
      kernel_init=nnx.with_partitioning(kernel_init, axes),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)))


def layer_norm(dim: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      dim, rngs=rngs,
      scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ('embed',)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ('embed',)))
