"""Pre-LayerNorm Transformer blocks: x + mixer(LN(x)), then x + MLP(LN(x)); any registered mixer.

`Stack` is the one stack of blocks every backbone uses (the causal LM, the encoders of the
classification tasks), so how the layers run is decided in one place.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import mixers
from mixers.base import update_all_buffers
from mixers.layers import constrain, layer_norm, linear, sequence_sharding


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; a no-op when rng is None (evaluation) or rate is 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_path(x: jax.Array, rate, rng: jax.Array | None) -> jax.Array:
  """Stochastic depth (Huang et al. 2016): a residual branch dropped for whole examples,
  the kept ones scaled by 1 / (1 - rate); a no-op in evaluation or at rate 0 (or None). A traced
  rate (a scanned layer's) at 0 keeps every example exactly."""
  if rng is None or rate is None or (isinstance(rate, (int, float)) and rate == 0.0):
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class MLP(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.up = linear(dim, hidden, ('embed', 'mlp'), rngs=rngs)
    self.down = linear(hidden, dim, ('mlp', 'embed'), rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, max_len: int, causal: bool,
               mixer: str, mixer_options: dict, dropout_rate: float, drop_path_rate: float = 0.0,
               rngs: nnx.Rngs):
    self.norm1 = layer_norm(dim, rngs=rngs)
    self.mixer = mixers.build(mixer, dim=dim, num_heads=num_heads, max_len=max_len,
                              causal=causal, rngs=rngs, **mixer_options)
    self.norm2 = layer_norm(dim, rngs=rngs)
    self.mlp = MLP(dim, mlp_dim, rngs=rngs)
    self.dropout_rate, self.drop_path_rate = dropout_rate, drop_path_rate
    self.activation = sequence_sharding('embed')  # the block's input and output

  def __call__(self, x, *, rng=None, drop_path_rate=None):
    """drop_path_rate: this layer's rate when the Stack passes it (scanned layers share one
    module); None: the rate it was built with."""
    rate = self.drop_path_rate if drop_path_rate is None else drop_path_rate
    keys = (None,) * 5 if rng is None else jax.random.split(rng, 5)
    x = constrain(x, self.activation)
    y = dropout(self.mixer(self.norm1(x), rng=keys[0]), self.dropout_rate, keys[1])
    x = x + drop_path(y, rate, keys[3])
    y = dropout(self.mlp(self.norm2(x)), self.dropout_rate, keys[2])
    return constrain(x + drop_path(y, rate, keys[4]), self.activation)

  def step(self, x_t, cache):
    """Decoding: one position through the block, using the mixer's cache."""
    y, cache = self.mixer.step(self.norm1(x_t), cache)
    x_t = x_t + y
    return x_t + self.mlp(self.norm2(x_t)), cache


REMAT_POLICIES = {
    'none': None,  # activations of every layer kept for the backward pass
    'full': jax.checkpoint_policies.nothing_saveable,  # each layer recomputed in the backward pass
    'dots': jax.checkpoint_policies.checkpoint_dots,  # matmul outputs kept, the rest recomputed
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # ... but not
    # batched ones (attention scores), the usual Transformer choice
}
# Stacked parameters carry this logical axis first (config.axis_rules maps it, to None).
LAYERS = 'layers'
_LAYER_AXIS = {nnx.PARTITION_NAME: LAYERS}


def stack_blocks(blocks: list[Block]) -> Block:
  """Blocks of one structure -> one Block whose Variables are stacked on a leading 'layers' axis
  (the scanned layout of the same parameters; sharded by their logical axes inside a mesh)."""
  graphdef, first = nnx.split(blocks[0])
  is_var = lambda v: isinstance(v, nnx.Variable)
  state = jax.tree.map(lambda v, *vs: v.replace(jnp.stack([w[...] for w in vs])), first,
                       *(nnx.state(b) for b in blocks), is_leaf=is_var)
  state = nnx.spmd.add_axis(state, 0, _LAYER_AXIS)
  if not jax.sharding.get_abstract_mesh().empty:
    state = jax.tree.map(lambda v: v.replace(jax.device_put(v[...], nnx.spmd.get_var_pspec(v))),
                         state, is_leaf=is_var)
  return nnx.merge(graphdef, state)


def stack_options(model_cfg) -> dict:
  """The layout options of config.model (scan_layers, remat) every backbone passes to Stack."""
  return {'scan_layers': bool(model_cfg.get('scan_layers', False)),
          'remat': str(model_cfg.get('remat', 'none'))}


class Stack(nnx.Module):
  """num_layers Blocks run in order. drop_path_rate rises linearly from 0 at the first block to
  the given rate at the last (the DeiT schedule).

  scan_layers=True stores the layers' parameters and Buffers stacked on a leading 'layers' axis
  and runs them under one jax.lax.scan, so the compiled program (and its compile time) does not
  grow with depth. remat (a REMAT_POLICIES name) recomputes each layer's activations in the
  backward pass, in both layouts. The scanned layout is built from the same Blocks, stacked, so
  both layouts start from the same parameters and compute the same function.
  """

  def __init__(self, num_layers: int, *, drop_path_rate: float = 0.0, scan_layers: bool = False,
               remat: str = 'none', rngs: nnx.Rngs, **block):
    if remat not in REMAT_POLICIES:
      raise ValueError(f'model.remat must be one of {sorted(REMAT_POLICIES)}, got {remat!r}')
    self.num_layers, self.scan, self.remat = num_layers, scan_layers, remat
    self.rates = tuple(drop_path_rate * i / max(num_layers - 1, 1) for i in range(num_layers))
    layers = [Block(**block, drop_path_rate=0.0 if scan_layers else r, rngs=rngs)
              for r in self.rates]  # scanned: the rate comes with the call
    self.layers = stack_blocks(layers) if scan_layers else nnx.List(layers)

  def __len__(self):
    return self.num_layers

  def layer_modules(self) -> list:
    """The modules whose Python attributes define the layers: each Block when looped, the one
    stacked Block when scanned (setting an attribute there sets it for every layer)."""
    return [self.layers] if self.scan else list(self.layers)

  def __getitem__(self, i):
    """Layer i as a Block (a copy of its slice in the scanned layout)."""
    if not self.scan:
      return self.layers[i]
    graphdef, state = nnx.split(self.layers)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state))

  def _apply(self, graphdef):
    """(layer state, x, key, rate) -> (output, the layer's Buffers after the call): one layer as a
    pure function (plain JAX transforms, so a Stack runs inside any jax.lax loop), under the
    remat policy."""
    def apply(state, x, key, rate):
      block = nnx.merge(graphdef, state)
      y = block(x, rng=key, drop_path_rate=rate)
      return y, nnx.split(block, nnx.Param, ...)[2]
    policy = REMAT_POLICIES[self.remat]
    return apply if self.remat == 'none' else jax.checkpoint(apply, policy=policy)

  def __call__(self, x, *, rng=None):
    keys = None if rng is None else jax.random.split(rng, self.num_layers)
    if not self.scan:
      for i, layer in enumerate(self.layers):
        key = None if keys is None else keys[i]
        if self.remat == 'none':
          x = layer(x, rng=key)
        else:
          graphdef, state = nnx.split(layer)
          x, buffers = self._apply(graphdef)(state, x, key, self.rates[i])
          if rng is not None:  # Buffers change in training mode only
            nnx.update(layer, buffers)
      return x
    rates = jnp.asarray(self.rates) if any(self.rates) else None  # None: drop path off
    graphdef, state = nnx.split(self.layers)
    apply = self._apply(graphdef)

    def body(x, xs):
      state, key, rate = xs
      return apply(state, x, key, rate)

    x, buffers = jax.lax.scan(body, x, (state, keys, rates))
    if rng is not None:
      nnx.update(self.layers, buffers)
    return x

  def update_stacked_buffers(self, step, key) -> bool:
    """The scanned layout updates its layers' Buffers itself, in one vmapped call (see
    mixers.update_all_buffers); False: the layers are separate modules."""
    if not self.scan:
      return False
    graphdef, state = nnx.split(self.layers)

    def update(state, key):
      block = nnx.merge(graphdef, state)
      update_all_buffers(block, step, key)
      return nnx.split(block, nnx.Param, ...)[2]

    nnx.update(self.layers, jax.vmap(update)(state, jax.random.split(key, self.num_layers)))
    return True

  def init_cache(self, batch: int, max_len: int):
    if not self.scan:
      return [layer.mixer.init_cache(batch, max_len) for layer in self.layers]
    graphdef, state = nnx.split(self.layers)
    return jax.vmap(lambda s: nnx.merge(graphdef, s).mixer.init_cache(batch, max_len))(state)

  def step(self, x_t, caches):
    if not self.scan:
      out = []
      for layer, c in zip(self.layers, caches):
        x_t, c = layer.step(x_t, c)
        out.append(c)
      return x_t, out
    graphdef, state = nnx.split(self.layers)
    return jax.lax.scan(lambda x, xs: nnx.merge(graphdef, xs[0]).step(x, xs[1]), x_t,
                        (state, caches))
