"""The train state {'params', 'buffers', 'opt', 'step'} and the jitted train step.

The step is built from a loss function `(model, batch, rng) -> (loss, metrics)` and
knows no task; trainlib.run builds it from the task's loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mixers import update_all_buffers


def create(model: nnx.Module, tx, mesh):
  """(graphdef, state) from a freshly built model; scalars replicated on the mesh."""
  graphdef, params, buffers = nnx.split(model, nnx.Param, ...)
  state = {'params': params, 'buffers': buffers, 'opt': jax.jit(tx.init)(params),
           'step': jnp.zeros((), jnp.int32)}
  # Scalars (step, optimizer counts) come out on one device: replicate them on the mesh.
  replicated = NamedSharding(mesh, P())
  state = jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated),
      state)
  return graphdef, state


def merge(graphdef, params, buffers, compute_dtype='float32') -> nnx.Module:
  """The model for a forward pass. With compute_dtype='bfloat16' the float32 master
  parameters are cast for compute (gradients flow back to float32); mixers keep their
  sums, exponentials and normalisers in float32."""
  dtype = jnp.dtype(compute_dtype)
  if dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating)
                          else p, params)
  # copy=True: Buffers written inside a traced forward pass (e.g. centroid updates) must
  # belong to this trace, not to the arrays passed into jit.
  return nnx.merge(graphdef, params, buffers, copy=True)


def make_train_step(loss_fn, model_fn, tx, lr_fn, seed, state_sharding, batch_sharding):
  """The jitted train step (state, batch) -> (state, metrics); the state is donated.

  model_fn(params, buffers) -> model; loss_fn(model, batch, rng) -> (loss, metrics).
  Dropout and Buffer updates draw from a key folded from the step number, so a
  resumed run repeats an uninterrupted one exactly.
  """
  base_key = jax.random.key(seed)

  def train_step(state, batch):
    step = state['step']
    buf_key, drop_key = jax.random.split(jax.random.fold_in(base_key, step))

    def objective(params):
      model = model_fn(params, state['buffers'])
      update_all_buffers(model, step, buf_key)
      loss, metrics = loss_fn(model, batch, drop_key)
      return loss, (metrics, nnx.split(model, nnx.Param, ...)[2])  # the updated Buffers

    (loss, (metrics, buffers)), grads = jax.value_and_grad(objective, has_aux=True)(
        state['params'])
    updates, opt = tx.update(grads, state['opt'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, **metrics, 'grad_norm': optax.tree.norm(grads), 'lr': lr_fn(step)}
    return {'params': params, 'buffers': buffers, 'opt': opt, 'step': step + 1}, metrics

  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=0)
