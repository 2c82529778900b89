"""One global mesh from the config; logical axis names on parameters map to mesh axes by rules.

config.mesh = {'data': -1, 'fsdp': 1, 'sequence': 1, 'tensor': 1} is data parallel over
every device; {'data': 1, 'fsdp': -1, ...} shards parameters (FSDP); 'sequence': n splits
each sequence's positions over n devices (sequence parallelism, mixers/sequence_parallel.py).
The rules (config.axis_rules) map logical names ('batch', 'embed', 'mlp', 'length', ...) to
these axes, so the parallelism is a config change. A mesh without a 'sequence' entry (an
older config) has sequence=1.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ('data', 'fsdp', 'sequence', 'tensor')
OPTIONAL = {'sequence': 1}  # axes an older config may lack


def make_mesh(shape_cfg) -> jax.sharding.Mesh:
  sizes = [int(shape_cfg[a]) if a in shape_cfg else OPTIONAL[a] for a in MESH_AXES]
  n = jax.device_count()
  if sizes.count(-1) > 1:
    raise ValueError(f'config.mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if n % known:
      raise ValueError(f'config.mesh {dict(zip(MESH_AXES, sizes))} does not fit {n} devices')
    sizes[sizes.index(-1)] = n // known
  if math.prod(sizes) != n:
    raise ValueError(f'config.mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} '
                     f'devices, {n} are available')
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(sizes))


def batch_sharding(mesh, rules) -> NamedSharding:
  """Batch rows split over the mesh axes the 'batch' logical axis maps to."""
  return NamedSharding(mesh, P(dict(rules)['batch']))


def check_batch(global_batch: int, mesh) -> None:
  shards = mesh.shape['data'] * mesh.shape['fsdp']
  if global_batch % shards:
    raise ValueError(f'batch_size={global_batch} does not divide over the {shards} data shards '
                     f'of the mesh {dict(mesh.shape)}; pick a multiple of {shards}')


def to_global(local: dict, sharding: NamedSharding) -> dict:
  """This host's numpy batch -> global jax.Arrays laid out by `sharding`."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}
