"""Sequence parallelism: one sequence's positions split over the mesh axis 'sequence'.

When the mesh in context (jax.set_mesh; trainlib.run sets it around the train step)
has a 'sequence' axis of size n > 1, mixers with an exact sequence-parallel path run
it through `sharded`: a shard_map over that axis in which each device sees a
contiguous block of positions, [batch, length / n, ...]. What crosses devices is
small and explicit:
  - `exclusive_scan`: each device gets the combined summaries of all devices before
    it (or after it), for causal prefix states (FAVOR+ / linear attention's key-value
    state, AFT's log-sum-exp sums), in log2(n) + 1 ppermutes;
  - `all_combine`: the combination over every device (bidirectional summaries);
  - `halo`: the last (or first) positions of the neighbouring device, for windows;
  - `ring`: key/value blocks passed once around the ring (softmax).
A mixer without such a path raises `unsupported` instead of letting XLA gather the
whole sequence. Lengths that do not divide by n are zero padded at the end; each
shard knows how many of its positions are real (`Shard.valid`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

AXIS = 'sequence'
BATCH_AXES = ('data', 'fsdp')


def shards() -> int:
  """How many devices the length is split over in the current mesh (1: not sharded).

  Inside a shard_map over the axis (the axis is manual there) it is 1, so a path never
  nests itself."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or AXIS not in mesh.axis_names or AXIS in mesh.manual_axes:
    return 1
  return mesh.shape[AXIS]


def unsupported(mixer: str) -> None:
  """Raises for a mixer without a sequence-parallel path when the length is sharded."""
  n = shards()
  if n > 1:
    raise ValueError(
        f'mixer {mixer!r} has no sequence-parallel path, and config.mesh.sequence={n} shards '
        f'the length; set --config.mesh.sequence=1 or use a mixer with one '
        f'({", ".join(SUPPORTED)})')


# The mixers with an exact path (the sparse ones: where a halo suffices, see their module).
SUPPORTED = ('performer', 'linear', 'aft_simple', 'aft_local', 'aft_conv (1-D)', 'softmax',
             'local', 'longformer without num_global')


def _batch_spec(batch: int):
  """The data-parallel mesh axes the batch axis splits over (those that divide it)."""
  mesh = jax.sharding.get_abstract_mesh()
  axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
  return axes if axes and batch % math.prod(mesh.shape[a] for a in axes) == 0 else None


def constrain(x: jax.Array, axis: int = 1) -> jax.Array:
  """Lays x out with `axis` (its length) over the sequence devices, batch over data."""
  if shards() == 1:
    return x
  spec = [None] * x.ndim
  spec[0], spec[axis] = _batch_spec(x.shape[0]), AXIS
  return jax.lax.with_sharding_constraint(x, P(*spec))


@dataclasses.dataclass(frozen=True)
class Shard:
  """Where a device's block lies: positions offset .. offset + size of a `length` sequence."""
  index: jax.Array  # this device's place along the axis (traced)
  count: int        # devices along the axis
  size: int         # positions per device (padding included)
  length: int       # real positions of the whole sequence

  @property
  def offset(self):
    return self.index * self.size

  @property
  def valid(self):
    """How many of this block's positions are real (not end padding)."""
    return jnp.clip(self.length - self.offset, 0, self.size)

  def real(self):
    """[size] bool: which local positions are real."""
    return jnp.arange(self.size) < self.valid


def sharded(fn: Callable, arrays, replicated=()):
  """fn(shard, *local_arrays, *replicated) over the sequence devices; arrays [B, T, ...].

  Pads T up to a multiple of the devices, splits it (and the batch over the data axes),
  passes `replicated` whole to every device and returns fn's [B, T_local, ...] output
  reassembled and cut back to T.
  """
  n, (batch, length) = shards(), arrays[0].shape[:2]
  size = -(-length // n)
  pad = lambda a: jnp.pad(a, [(0, 0), (0, n * size - length)] + [(0, 0)] * (a.ndim - 2))
  spec = P(_batch_spec(batch), AXIS)

  def local(*args):
    shard = Shard(jax.lax.axis_index(AXIS), n, size, length)
    return fn(shard, *args)

  out = jax.shard_map(local, in_specs=(spec,) * len(arrays) + (P(),) * len(replicated),
                      out_specs=spec, check_vma=False)(*map(pad, arrays), *replicated)
  return out[:, :length]


def _shift(x, shard: Shard, by: int):
  """Device i receives device i - by's x (i + |by| for by < 0); zeros where none exists."""
  n = shard.count
  pairs = [(j, j + by) for j in range(n) if 0 <= j + by < n]
  return jax.tree.map(lambda a: jax.lax.ppermute(a, AXIS, pairs), x)


def _where(cond, a, b):
  return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def shifted(x, identity, shard: Shard, by: int):
  """Device i gets device i - by's x (a pytree), `identity` where there is none."""
  edge = shard.index < by if by > 0 else shard.index >= shard.count + by
  return _where(edge, identity, _shift(x, shard, by))


def exclusive_scan(combine: Callable, x, identity, shard: Shard, *, reverse: bool = False):
  """combine over the devices before this one (after it when reverse); `identity` on the
  first. combine(earlier, later) must be associative; doubling, log2(n) + 1 ppermutes of x."""
  step = -1 if reverse else 1
  before = lambda k: (shard.count - 1 - shard.index if reverse else shard.index) >= k
  k = 1
  while k < shard.count:
    got = _shift(x, shard, step * k)
    x = _where(before(k), combine(got, x) if not reverse else combine(x, got), x)
    k *= 2
  return shifted(x, identity, shard, step)


def all_combine(x, scale_key: str):
  """Sums a summary over every device, each held relative to exp(x[scale_key]): the common
  scale is the largest, the others rescale to it (log-sum-exp). Returns the same structure."""
  scale = x[scale_key]
  top = jax.lax.pmax(jax.lax.stop_gradient(scale), AXIS)
  factor = jnp.exp(scale - top)
  return {k: top if k == scale_key else
          jax.lax.psum(v * factor.reshape(factor.shape + (1,) * (v.ndim - factor.ndim)), AXIS)
          for k, v in x.items()}


def halo(x, width: int, shard: Shard, *, fill=0., after: bool = False):
  """The previous device's last `width` positions along axis 1 (the next device's first
  when after), `fill` at the ends of the sequence."""
  if width == 0:
    return x[:, :0]
  if width > shard.size:
    raise ValueError(f'a window reaching {width} positions across devices is wider than the '
                     f'{shard.size} positions each of the {shard.count} sequence devices holds; '
                     f'use fewer sequence devices (config.mesh.sequence) or a longer sequence')
  part = x[:, :width] if after else x[:, shard.size - width:]
  got = _shift(part, shard, -1 if after else 1)
  edge = shard.index == (shard.count - 1 if after else 0)
  return jnp.where(edge, jnp.asarray(fill, x.dtype), got)


def ring(step: Callable, carry, block, shard: Shard):
  """Passes `block` once around the ring: step(carry, block, source) for source = this
  device, then the one before it, ..., each block moving to the next device in between."""
  n = shard.count
  perm = [(j, (j + 1) % n) for j in range(n)]
  for s in range(n):
    carry = step(carry, block, (shard.index - s) % n)
    if s < n - 1:
      block = jax.tree.map(functools.partial(jax.lax.ppermute, axis_name=AXIS, perm=perm), block)
  return carry
