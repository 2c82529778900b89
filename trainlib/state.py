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


def micro_batches(batch: dict, k: int, sharding: NamedSharding) -> dict:
  """[B, ...] -> [k, B/k, ...]; micro-batch i holds rows i, i+k, i+2k, ... With the batch
  split over devices in contiguous blocks of a multiple of k rows, each device keeps its own
  rows: every micro-batch is spread over all devices and no row moves."""
  spread = NamedSharding(sharding.mesh, P(None, *sharding.spec))

  def split(x):
    x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
    return jax.lax.with_sharding_constraint(x, spread)
  return jax.tree.map(split, batch)


def make_train_step(loss_fn, model_fn, tx, lr_fn, seed, state_sharding, batch_sharding,
                    accum_steps: int = 1, weight_fn=None):
  """The jitted train step (state, batch) -> (state, metrics); the state is donated.

  model_fn(params, buffers) -> model; loss_fn(model, batch, rng) -> (loss, metrics).
  Dropout and Buffer updates draw from a key folded from the step number, so a
  resumed run repeats an uninterrupted one exactly.

  accum_steps = k > 1 splits the batch into k micro-batches, run one after the other (a
  scan), and applies one update with their losses, metrics and gradients averaged with the
  weights weight_fn(micro_batch) (what the loss is a mean over: tokens or examples), so the
  result is the whole batch's mean up to float rounding. Buffers advance once per step:
  update_buffers runs once before the micro-batches, each micro-batch's forward pass starts
  from the same Buffers, and what forward passes write (routing's centroid EMA) is averaged
  with the same weights. Dropout masks are drawn per micro-batch.
  """
  base_key = jax.random.key(seed)

  def loss_and_grads(params, buffers, batch, key):
    def objective(params):
      model = model_fn(params, buffers)
      loss, metrics = loss_fn(model, batch, key)
      return loss, (metrics, nnx.split(model, nnx.Param, ...)[2])  # Buffers the pass wrote
    return jax.value_and_grad(objective, has_aux=True)(params)

  def accumulate(params, buffers, batch, key):
    """loss_and_grads of the whole batch, as the weighted mean over accum_steps micro-batches."""
    micro = micro_batches(batch, accum_steps, batch_sharding)
    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(loss_and_grads, params, buffers, first, key)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32 if jnp.issubdtype(
        s.dtype, jnp.floating) else s.dtype), shapes)

    def add(total, w, x, start=None):
      # Float leaves add w * x (Buffers: w * their change); others keep the latest value.
      if not jnp.issubdtype(x.dtype, jnp.floating):
        return x
      return total + w * (x if start is None else x - start).astype(jnp.float32)

    def body(carry, xs):
      weight, (loss, (metrics, bufs)), grads = carry
      mb, i = xs
      (l, (m, b)), g = loss_and_grads(params, buffers, mb, jax.random.fold_in(key, i))
      w = weight_fn(mb).astype(jnp.float32)
      return (weight + w, (add(loss, w, l), (jax.tree.map(lambda t, x: add(t, w, x), metrics, m),
              jax.tree.map(lambda t, x, s: add(t, w, x, s), bufs, b, buffers))),
              jax.tree.map(lambda t, x: add(t, w, x), grads, g)), None

    (weight, (loss, (metrics, bufs)), grads), _ = jax.lax.scan(
        body, (jnp.zeros((), jnp.float32), *zeros), (micro, jnp.arange(accum_steps)))

    def mean(total, like, start=None):
      if not jnp.issubdtype(like.dtype, jnp.floating):
        return total
      total = total / weight
      return (total if start is None else start + total).astype(like.dtype)
    return ((mean(loss, shapes[0][0]),
             (jax.tree.map(mean, metrics, shapes[0][1][0]),
              jax.tree.map(mean, bufs, shapes[0][1][1], buffers))),
            jax.tree.map(mean, grads, shapes[1]))

  def train_step(state, batch):
    step = state['step']
    buf_key, drop_key = jax.random.split(jax.random.fold_in(base_key, step))
    model = model_fn(state['params'], state['buffers'])
    update_all_buffers(model, step, buf_key)
    buffers = nnx.split(model, nnx.Param, ...)[2]
    grad_fn = loss_and_grads if accum_steps == 1 else accumulate
    (loss, (metrics, buffers)), grads = grad_fn(state['params'], buffers, batch, drop_key)
    updates, opt = tx.update(grads, state['opt'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, **metrics, 'grad_norm': optax.tree.norm(grads), 'lr': lr_fn(step)}
    return {'params': params, 'buffers': buffers, 'opt': opt, 'step': step + 1}, metrics

  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=0)
