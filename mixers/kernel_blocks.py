"""Scans over blocks of positions of [B, L, H, ...] arrays, in place, with a recomputing VJP.

The kernel-attention engine (mixers/kernel_attention.py) runs its math block by block
along the length. Each step slices its positions straight from the [B, L, H, ...] inputs
(only the block is made head-major), carries a small state, and writes its output back in
place. The custom VJP saves only the carry entering each block (for attention, per head an
m x (dv + 1) summary and its scale); the backward pass runs the blocks in reverse,
recomputing each block inside its VJP, and writes the input gradients in place. So nothing
of length L is copied, transposed or stacked besides the output and the gradients.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def _block(x, start, width):
  """Positions start .. start + width of x [B, L, H, ...], head-major: [B, H, width, ...]."""
  return jnp.swapaxes(jax.lax.dynamic_slice_in_dim(x, start, width, axis=1), 1, 2)


def _put(buffer, start, x):
  """Writes a head-major block [B, H, width, ...] into buffer [B, L, H, ...] at start."""
  return jax.lax.dynamic_update_slice_in_dim(buffer, jnp.swapaxes(x, 1, 2).astype(buffer.dtype),
                                             start, axis=1)


def _loop(length: int, size: int, body: Callable, carry, *, reverse: bool = False):
  """carry = body(i, width, carry) for block i (positions i size ..): the full blocks in a
  fori_loop, the shorter last one (static width) apart, so nothing is padded."""
  n, tail = divmod(length, size)
  full = lambda carry: jax.lax.fori_loop(
      0, n, lambda i, c: body(n - 1 - i if reverse else i, size, c), carry)
  if not reverse:
    carry = full(carry)
  if tail:
    carry = body(n, tail, carry)
  return full(carry) if reverse else carry


def _add(a, b):
  return jax.tree.map(jnp.add, a, b)


def blocked_scan(fn: Callable, params, carry, xs: tuple, consts=(), *, block_size: int,
                 out: tuple[int, jnp.dtype] | None = None, save_every: int = 1):
  """Runs carry, y_b = fn(params, carry, blocks, consts, start) over the blocks of xs.

  xs: [B, L, H, ...] arrays; fn gets their positions start .. start + w head-major
  ([B, H, w, ...]) and returns the next carry and y_b [B, H, w, out[0]] (None when out is
  None). params (differentiable) and consts (not: masks' bounds and the like) are the same
  for every block. Returns (the final carry, y [B, L, H, out[0]] of dtype out[1], or None).
  Differentiable in params, carry and xs; the backward pass recomputes each block. It
  saves the carry entering every `save_every`-th block only, and advances it to the blocks
  in between by rerunning fn for its carry alone (its output is then dead code): fewer
  saved carries for some recomputation.
  """
  b, length, h = xs[0].shape[:3]
  size = min(block_size, length)
  count = -(-length // size)
  kept = -(-count // save_every)

  def forward(params, carry, xs, consts, save):
    ys = None if out is None else jnp.zeros((b, length, h, out[0]), out[1])
    saved = jax.tree.map(lambda a: jnp.zeros((kept, *a.shape), a.dtype), carry) if save else ()

    def body(i, width, state):
      carry, ys, saved = state
      if save:  # (a rewrite of the slot's own value between the kept blocks)
        first = i % save_every == 0
        saved = jax.tree.map(lambda s, a: s.at[i // save_every].set(
            jnp.where(first, a, s[i // save_every])), saved, carry)
      carry, y = fn(params, carry, tuple(_block(x, i * size, width) for x in xs), consts, i * size)
      return carry, ys if out is None else _put(ys, i * size, y), saved
    return _loop(length, size, body, (carry, ys, saved))

  @jax.custom_vjp
  def run(params, carry, xs, consts):
    return forward(params, carry, xs, consts, False)[:2]

  differentiated = []  # per leaf of params: whether its gradient is wanted (set by run_fwd)

  def run_fwd(params, carry, xs, consts):
    differentiated[:] = [p.perturbed for p in jax.tree.leaves(params)]
    params, carry, xs, consts = jax.tree.map(lambda p: p.value, (params, carry, xs, consts))
    carry, ys, saved = forward(params, carry, xs, consts, True)
    return (carry, ys), (params, saved, xs, consts)

  def run_bwd(res, cotangents):
    params, saved, xs, consts = res
    dcarry, dys = jax.tree.map(lambda c: jnp.zeros(c.aval.shape, c.aval.dtype)
                               if isinstance(c, SymbolicZero) else c, cotangents,
                               is_leaf=lambda c: isinstance(c, SymbolicZero))
    # Only the wanted parameter gradients are computed (a fixed FAVOR+ projection's would
    # cost a block's [positions, m] x [positions, d] product in every block for nothing).
    leaves, tree = jax.tree.flatten(params)
    wanted = [leaf for leaf, d in zip(leaves, differentiated) if d]

    def merged(chosen, others):
      """params' structure: the wanted leaves from `chosen`, the others from `others`."""
      chosen = iter(chosen)
      return tree.unflatten([next(chosen) if d else o for o, d in zip(others, differentiated)])

    def body(i, width, state):
      """Block i's VJP from the carry that entered it and the gradient of the one it left."""
      dwanted, dcarry, dxs = state
      start = i * size
      advance = lambda j, c: fn(params, c, tuple(_block(x, j * size, size) for x in xs),
                                consts, j * size)[0]
      carry = jax.lax.fori_loop(i - i % save_every, i, advance,
                                jax.tree.map(lambda s: s[i // save_every], saved))
      _, vjp = jax.vjp(lambda p, c, blocks: fn(merged(p, leaves), c, blocks, consts, start),
                       wanted, carry, tuple(_block(x, start, width) for x in xs))
      dp, dcarry, dblocks = vjp((dcarry, None if out is None else _block(dys, start, width)))
      return (_add(dwanted, dp), dcarry,
              tuple(_put(g, start, d) for g, d in zip(dxs, dblocks)))
    zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)
    dwanted, dcarry, dxs = _loop(length, size, body, (zeros(wanted), dcarry, zeros(xs)),
                                 reverse=True)
    dparams = merged(dwanted, [jnp.zeros_like(leaf) for leaf in leaves])
    return dparams, dcarry, dxs, jax.tree.map(lambda _: None, consts)

  run.defvjp(run_fwd, run_bwd, symbolic_zeros=True)
  return run(params, carry, tuple(xs), consts)
