"""The train state: {'params', 'buffers', 'opt', 'step'}, created sharded on the mesh.

train.py trains it; eval.py builds the same structure as a restore target.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mixers import update_all_buffers
from trainlib import mesh as mesh_lib
from trainlib import optim, task


def create(config, mesh, total_steps: int):
  """Returns (graphdef, state, tx, lr_schedule); parameters laid out by config.axis_rules."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(config.axis_rules):
    model = task.build_model(config, nnx.Rngs(config.seed))
  graphdef, params, buffers = nnx.split(model, nnx.Param, ...)
  tx, lr_fn = optim.optimizer(config.optim, total_steps)
  state = {'params': params, 'buffers': buffers, 'opt': jax.jit(tx.init)(params),
           'step': jnp.zeros((), jnp.int32)}
  # Scalars (step, optimizer counts) come out on one device: replicate them on the mesh.
  replicated = NamedSharding(mesh, P())
  state = jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated),
      state)
  return graphdef, state, tx, lr_fn


def merge(config, graphdef, params, buffers) -> nnx.Module:
  """The model for a forward pass. With model.compute_dtype='bfloat16' the float32 master
  parameters are cast for compute (gradients flow back to float32); mixers keep their
  sums, exponentials and normalisers in float32."""
  dtype = jnp.dtype(config.model.compute_dtype)
  if dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating)
                          else p, params)
  # copy=True: Buffers written inside a traced forward pass (e.g. centroid updates) must
  # belong to this trace, not to the arrays passed into jit.
  return nnx.merge(graphdef, params, buffers, copy=True)


def setup(config, total_steps: int):
  """(mesh, batch_sharding, graphdef, fresh sharded state, jitted train step) of a run."""
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch(config.batch_size, mesh)
  batch_sharding = mesh_lib.batch_sharding(mesh, config.axis_rules)
  graphdef, state, tx, lr_fn = create(config, mesh, total_steps)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  train_step = make_train_step(config, graphdef, tx, lr_fn, state_sharding, batch_sharding)
  return mesh, batch_sharding, graphdef, state, train_step


def make_train_step(config, graphdef, tx, lr_fn, state_sharding, batch_sharding):
  """The jitted train step (state, batch) -> (state, metrics); the state is donated.

  Dropout and Buffer updates draw from a key folded from the step number, so a
  resumed run repeats an uninterrupted one exactly.
  """
  base_key = jax.random.key(config.seed)

  def train_step(state, batch):
    step = state['step']
    buf_key, drop_key = jax.random.split(jax.random.fold_in(base_key, step))

    def loss_fn(params):
      model = merge(config, graphdef, params, state['buffers'])
      update_all_buffers(model, step, buf_key)
      total, count = task.nll(model, batch, rng=drop_key)
      return total / count, nnx.split(model, nnx.Param, ...)[2]  # the updated Buffers

    (loss, buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt = tx.update(grads, state['opt'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), 'lr': lr_fn(step)}
    return {'params': params, 'buffers': buffers, 'opt': opt, 'step': step + 1}, metrics

  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=0)


def make_eval_step(config, graphdef):
  @jax.jit
  def eval_step(params, buffers, batch):
    return task.nll(merge(config, graphdef, params, buffers), batch)
  return eval_step


def evaluate(eval_step, state, batches, to_global) -> dict:
  """Mean NLL (nats) and bits per token over `batches`, counting only unmasked tokens."""
  total = count = 0.0
  for batch in batches:
    s, c = eval_step(state['params'], state['buffers'], to_global(batch))
    total, count = total + float(s), count + float(c)
  loss = total / max(count, 1.0)
  return {'loss': loss, 'bits': loss / float(np.log(2.0)), 'tokens': count}
