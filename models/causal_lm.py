"""Causal token model: embeddings, pre-LN blocks of any mixer, a prediction head.

Serves byte-level language modelling (Enwik8, the quickstart) and, with 256
sub-pixel tokens, autoregressive images. Decoding runs through the mixers'
`step` where every mixer has one; otherwise `generate` reruns the parallel
forward pass, so every causal mixer can sample.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers import sequence_parallel
from mixers.base import check_length
from mixers.layers import layer_norm, linear, sharding_scope
from models.blocks import Stack, dropout


class CausalLM(nnx.Module):

  def __init__(self, *, vocab_size: int, dim: int, num_layers: int, num_heads: int,
               mlp_dim: int, max_len: int, mixer: str, mixer_options: dict | None = None,
               dropout_rate: float = 0.0, position: str = 'learned', start_token: bool = False,
               scan_layers: bool = False, remat: str = 'none', rngs: nnx.Rngs):
    """start_token=False: output t predicts token t+1 (byte LM on windows of T+1).
    start_token=True: inputs shift right behind a learned start vector, so output t
    predicts token t and the first token is modelled too (pixels). scan_layers, remat: the
    layers' layout (models.blocks.Stack)."""
    if position not in ('learned', 'none'):
      raise ValueError(f"position must be 'learned' or 'none', got {position!r}")
    with sharding_scope():  # buildable outside a mesh too (then unsharded)
      self._build(vocab_size, dim, num_layers, num_heads, mlp_dim, max_len, mixer,
                  mixer_options, dropout_rate, position, start_token, rngs,
                  dict(scan_layers=scan_layers, remat=remat))

  def _build(self, vocab_size, dim, num_layers, num_heads, mlp_dim, max_len, mixer,
             mixer_options, dropout_rate, position, start_token, rngs, layout):
    self.max_len, self.dropout_rate = max_len, dropout_rate
    init = nnx.initializers.normal(0.02)
    self.embed = nnx.Embed(vocab_size, dim, rngs=rngs,
                           embedding_init=nnx.with_partitioning(init, ('vocab', 'embed')))
    self.pos = (nnx.Param(nnx.with_partitioning(init, ('length', 'embed'))(
        rngs.params(), (max_len, dim))) if position == 'learned' else None)
    self.start = (nnx.Param(nnx.with_partitioning(init, ('embed',))(rngs.params(), (dim,)))
                  if start_token else None)
    self.blocks = Stack(num_layers, dim=dim, num_heads=num_heads, mlp_dim=mlp_dim,
                        max_len=max_len, causal=True, mixer=mixer,
                        mixer_options=dict(mixer_options or {}), dropout_rate=dropout_rate,
                        rngs=rngs, **layout)
    self.norm = layer_norm(dim, rngs=rngs)
    self.head = linear(dim, vocab_size, ('embed', 'vocab'), rngs=rngs)

  def __call__(self, tokens: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
    """tokens [batch, length] int -> next-token logits [batch, length, vocab] (float32)."""
    length = tokens.shape[1]
    check_length(length, self.max_len, 'CausalLM')
    x = self.embed(tokens)
    if self.start is not None:
      start = jnp.broadcast_to(self.start[...].astype(x.dtype), (x.shape[0], 1, x.shape[2]))
      x = jnp.concatenate([start, x[:, :-1]], axis=1)
    if self.pos is not None:
      x = x + self.pos[:length]
    x = sequence_parallel.constrain(x)  # positions over the sequence devices, when any
    keys = (None, None) if rng is None else jax.random.split(rng)
    x = self.blocks(dropout(x, self.dropout_rate, keys[0]), rng=keys[1])
    return self.head(self.norm(x)).astype(jnp.float32)

  def init_cache(self, batch: int, max_len: int):
    check_length(max_len, self.max_len, 'CausalLM')
    return {'index': jnp.zeros((), jnp.int32),
            'layers': self.blocks.init_cache(batch, max_len)}

  def step(self, token_t: jax.Array, cache):
    """token_t [batch, 1] -> logits [batch, 1, vocab] for the next position.

    With a start token, the input at position 0 is the start vector (token_t is ignored)."""
    x = self.embed(token_t)
    if self.start is not None:
      x = jnp.where(cache['index'] == 0, self.start[...].astype(x.dtype), x)
    if self.pos is not None:
      x = x + jax.lax.dynamic_slice_in_dim(self.pos[...], cache['index'], 1)[None]
    x, layers = self.blocks.step(x, cache['layers'])
    logits = self.head(self.norm(x)).astype(jnp.float32)
    return logits, {'index': cache['index'] + 1, 'layers': layers}


def generate(model: CausalLM, prompt: jax.Array, num_tokens: int, key: jax.Array,
             temperature: float = 1.0) -> jax.Array:
  """Feeds `prompt` [batch, P] through the decode step, then samples `num_tokens`.

  One lax.scan over P + num_tokens - 1 positions: the prompt is teacher-forced,
  the rest sampled. Returns [batch, num_tokens]. Jit it with num_tokens static.
  For a model with a start token, pass a [batch, 1] prompt (its value is unused):
  the result is num_tokens tokens from the very first one.
  """
  batch, plen = prompt.shape
  total = plen + num_tokens
  try:
    cache = model.init_cache(batch, total - 1)  # the last sampled token is never fed back
  except NotImplementedError:  # a mixer without a decode step
    return _generate_parallel(model, prompt, num_tokens, key, temperature)

  def body(carry, t):
    token, cache = carry
    logits, cache = model.step(token, cache)
    sampled = jax.random.categorical(jax.random.fold_in(key, t), logits[:, 0] / temperature)
    forced = jax.lax.dynamic_index_in_dim(prompt, jnp.minimum(t + 1, plen - 1), 1, False)
    nxt = jnp.where(t + 1 < plen, forced, sampled)[:, None].astype(prompt.dtype)
    return (nxt, cache), nxt[:, 0]

  _, out = jax.lax.scan(body, (prompt[:, :1], cache), jnp.arange(total - 1))
  return out.T[:, plen - 1:]


def _generate_parallel(model: CausalLM, prompt, num_tokens, key, temperature):
  """`generate` for mixers without a decode step: the parallel forward pass over a buffer of
  the final length at each position (one compiled shape). Causality makes the slots not
  yet sampled irrelevant to the logits read."""
  start_token = model.start is not None
  plen = 0 if start_token else prompt.shape[1]
  buf = jnp.zeros((prompt.shape[0], plen + num_tokens), prompt.dtype)
  if not start_token:
    buf = buf.at[:, :plen].set(prompt)

  def body(p, buf):
    # With a start token output p predicts token p; otherwise output p - 1 does. The key is
    # folded as in the decoding scan, so both paths draw the same samples.
    i = p if start_token else p - 1
    logits = jax.lax.dynamic_index_in_dim(model(buf if start_token else buf[:, :-1]), i, 1, False)
    sampled = jax.random.categorical(jax.random.fold_in(key, i), logits / temperature)
    return jax.lax.dynamic_update_index_in_dim(buf, sampled.astype(buf.dtype), p, 1)

  return jax.lax.fori_loop(plen, plen + num_tokens, body, buf)[:, plen:]
