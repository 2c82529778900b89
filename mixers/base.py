"""The mixer contract every token mixer follows (see README, "Mixer contract").

A mixer maps x: [batch, length, dim] -> [batch, length, dim]. Causal mixers make
output t depend on inputs <= t only. Mixers with a recurrent or cached form also
implement `init_cache(batch, max_len)` and `step(x_t, cache) -> (y_t, cache)`
with x_t, y_t: [batch, 1, dim], matching the parallel form.
"""
from __future__ import annotations

import functools

import jax
from flax import nnx

from mixers import sequence_parallel


class Buffer(nnx.Variable):
  """State that is not learned by gradient (random projections, centroids).

  The optimizer skips it (it is not an nnx.Param), checkpoints keep it, and it
  changes only inside the jitted training step, through `Mixer.update_buffers`
  (called with the step number) or in the training-mode forward pass.
  """


class Mixer(nnx.Module):
  """Base class: subclasses implement __call__ and, where they can, decoding.

  sequence_parallel: True where __call__ has an exact path for a length split over the
  mesh's 'sequence' devices (mixers/sequence_parallel.py); every other mixer's __call__
  raises there, naming itself and the mesh setting, rather than gather the whole sequence.
  """

  causal: bool = False
  sequence_parallel: bool = False

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if '__call__' in cls.__dict__:
      cls.__call__ = _refuse_sharded_length(cls.__dict__['__call__'])

  def __call__(self, x: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
    """rng is given in training mode only (dropout-like noise); None = deterministic."""
    raise NotImplementedError

  def init_cache(self, batch: int, max_len: int):
    raise NotImplementedError(f'{type(self).__name__} has no decoding step')

  def step(self, x_t: jax.Array, cache):
    raise NotImplementedError(f'{type(self).__name__} has no decoding step')

  def update_buffers(self, step: jax.Array, key: jax.Array) -> None:
    """Called once per training step, inside jit, before the forward pass.

    `key` is folded from the step number, so a resumed run updates Buffers
    exactly as an uninterrupted one. Default: nothing to update.
    """


def _refuse_sharded_length(call):
  @functools.wraps(call)
  def checked(self, *args, **kwargs):
    if not type(self).sequence_parallel:
      sequence_parallel.unsupported(getattr(type(self), 'registered_name', type(self).__name__))
    return call(self, *args, **kwargs)
  return checked


def update_all_buffers(model: nnx.Module, step: jax.Array, key: jax.Array) -> None:
  """Gives every mixer inside `model` its per-step chance to update Buffers. A module with
  `update_stacked_buffers` returning True (a Stack of scanned layers) updated those under it."""
  modules = list(nnx.iter_modules(model))  # children before their parents
  done = [path for i, (path, m) in enumerate(modules) if hasattr(m, 'update_stacked_buffers')
          and m.update_stacked_buffers(step, jax.random.fold_in(key, i))]
  for i, (path, module) in enumerate(modules):
    if isinstance(module, Mixer) and not any(path[:len(d)] == d for d in done):
      module.update_buffers(step, jax.random.fold_in(key, i))


def check_length(length: int, max_len: int, name: str) -> None:
  if length > max_len:
    raise ValueError(
        f'{name}: sequence length {length} exceeds max_len={max_len}; '
        f'build the model with a larger max_len (config.model.max_len).')
