"""One run's setup, shared by train.py, eval.py and the bench: the task, the mesh, the
model's graph, the optimizer, the sharded state and the jitted train step."""
from __future__ import annotations

import functools

import jax
from flax import nnx

import tasks
from mixers.layers import sharding_scope
from trainlib import mesh as mesh_lib
from trainlib import optim
from trainlib import state as state_lib


def total_steps(config, task) -> int:
  """num_steps when set, else num_epochs x the task's steps per epoch; both must be > 0."""
  for field in ('num_steps', 'num_epochs', 'batch_size'):
    value = config.get(field)
    if value is not None and value <= 0:
      raise ValueError(f'config.{field} must be positive, got {value}')
  if config.num_steps is not None:
    return config.num_steps
  return config.num_epochs * task.steps_per_epoch()


def accum_steps(config, mesh) -> int:
  """config.grad_accum_steps, checked: each micro-batch must split evenly over the data shards."""
  k = config.get('grad_accum_steps', 1)
  if not isinstance(k, int) or k < 1:
    raise ValueError(f'config.grad_accum_steps must be a positive integer, got {k!r}')
  shards = mesh.shape['data'] * mesh.shape['fsdp']
  if config.batch_size % (k * shards):
    raise ValueError(f'batch_size={config.batch_size} does not split into grad_accum_steps={k} '
                     f'micro-batches over the {shards} data shards of the mesh {dict(mesh.shape)}; '
                     f'pick a batch_size that is a multiple of {k * shards}')
  return k


class Run:
  """Built once per process; `state` is created on the mesh, already sharded."""

  def __init__(self, config, steps: int | None = None, task=None):
    self.config = config
    self.task = task or tasks.get(config)
    self.total_steps = total_steps(config, self.task) if steps is None else steps
    self.mesh = mesh_lib.make_mesh(config.mesh)
    mesh_lib.check_batch(config.batch_size, self.mesh)
    self.accum_steps = accum_steps(config, self.mesh)
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh, config.axis_rules)
    self.tx, self.lr_fn = optim.optimizer(config.optim, self.total_steps)
    with jax.set_mesh(self.mesh), nnx.logical_axis_rules(config.axis_rules), sharding_scope():
      model = self.task.build_model(nnx.Rngs(config.seed))
    # The initial state; the first train step donates it.
    self.graphdef, self.state = state_lib.create(model, self.tx, self.mesh)
    self.state_sharding = jax.tree.map(lambda x: x.sharding, self.state)

  def model(self, params, buffers) -> nnx.Module:
    """The model for a forward pass over these parameters (in the config's compute dtype)."""
    return state_lib.merge(self.graphdef, params, buffers, self.config.model.compute_dtype)

  def to_global(self, batch: dict) -> dict:
    return mesh_lib.to_global(batch, self.batch_sharding)

  def in_mesh(self, fn):
    """fn traced and run inside this run's mesh: mixers see it (a sequence split over the
    'sequence' axis takes their sequence-parallel paths)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
      with jax.set_mesh(self.mesh):
        return fn(*args, **kwargs)
    return call

  @functools.cached_property
  def train_step(self):
    return self.in_mesh(state_lib.make_train_step(
        self.task.loss, self.model, self.tx, self.lr_fn, self.config.seed, self.state_sharding,
        self.batch_sharding, self.accum_steps, self.task.loss_weight))
