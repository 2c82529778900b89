"""Routing attention (Roy et al. 2021, Routing Transformer): online spherical k-means
routes tokens to clusters; each query attends to keys of its own cluster."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixers.base import Buffer, Mixer, check_length
from mixers.bucketed import bucketed_attention, unit
from mixers.layers import linear
from mixers.registry import register


def assign_clusters(x, centroids):
  """Nearest centroid by cosine: x [batch, T, heads, dh] unit rows, centroids
  [heads, n_clusters, dh] -> [batch, heads, T] ints."""
  return jnp.argmax(jnp.einsum('bthd,hkd->bhtk', x, centroids), -1).astype(jnp.int32)


def ema_update(centroids, x, clusters, decay: float):
  """One online k-means step: each centroid moves toward the mean of the unit vectors
  assigned to it (x [batch, T, heads, dh], clusters [batch, heads, T]) and is renormalised;
  a centroid with nothing assigned stays put. No gradient flows."""
  x = jax.lax.stop_gradient(x)
  onehot = jax.nn.one_hot(clusters, centroids.shape[1], dtype=jnp.float32)
  sums = jnp.einsum('bhtk,bthd->hkd', onehot, x)
  counts = jnp.sum(onehot, (0, 2))[..., None]
  moved = unit(decay * centroids + (1.0 - decay) * sums / jnp.maximum(counts, 1.0))
  return jnp.where(counts > 0, moved, centroids)


def routing_attention(qk, v, clusters, *, n_clusters: int, chunk_size: int, causal: bool):
  """Attention restricted to each query's cluster, given the clusters [batch, heads, T].

  Queries qk, keys qk / |qk| (shared projection). Tokens are sorted by (cluster, position)
  and cut into chunks of chunk_size: a query sees the keys of its cluster in its chunk and
  the previous one, which caps every cluster's cost at static shapes.
  """
  return bucketed_attention(qk, unit(qk.astype(jnp.float32)), v, clusters[:, :, None],
                            n_buckets=n_clusters, chunk_size=chunk_size, causal=causal,
                            same_bucket=True)


@register('routing')
class RoutingAttention(Mixer):
  """Routing Transformer attention. Queries and keys share one projection (the paper's
  shared-QK form), so a cluster's queries and keys sort together. Static shapes come from
  sort-and-chunk, not top-k per cluster: a top-k over the whole sequence lets later tokens
  decide which earlier keys a query sees (a causal leak) and leaves some queries unrouted.
  n_clusters defaults to max_len / chunk_size (an average cluster fills one chunk). The
  centroids are a Buffer: in training mode (rng given) the forward pass routes with the
  current centroids, then moves them by EMA."""

  def __init__(self, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs: nnx.Rngs,
               n_clusters: int | None = None, chunk_size: int = 64, ema_decay: float = 0.999):
    if dim % num_heads:
      raise ValueError(f'routing: dim={dim} is not divisible by num_heads={num_heads}')
    if n_clusters is None:
      n_clusters = max(1, max_len // chunk_size)
    for name, value in (('n_clusters', n_clusters), ('chunk_size', chunk_size)):
      if value < 1:
        raise ValueError(f'routing: {name} must be >= 1, got {value}')
    if not 0.0 <= ema_decay < 1.0:
      raise ValueError(f'routing: ema_decay must be in [0, 1), got {ema_decay}')
    self.num_heads, self.max_len, self.causal = num_heads, max_len, causal
    self.n_clusters, self.chunk_size, self.ema_decay = n_clusters, chunk_size, ema_decay
    self.qk, self.v = (linear(dim, dim, ('embed', 'heads'), rngs=rngs) for _ in range(2))
    self.out = linear(dim, dim, ('heads', 'embed'), rngs=rngs)
    self.centroids = Buffer(unit(jax.random.normal(
        rngs.params(), (num_heads, n_clusters, dim // num_heads), jnp.float32)))

  def __call__(self, x, *, rng=None):
    check_length(x.shape[1], self.max_len, 'routing')
    qk, v = (f(x).reshape(*x.shape[:2], self.num_heads, -1) for f in (self.qk, self.v))
    directions = unit(jax.lax.stop_gradient(qk).astype(jnp.float32))
    centroids = self.centroids[...]
    clusters = assign_clusters(directions, centroids)
    y = routing_attention(qk, v, clusters, n_clusters=self.n_clusters,
                          chunk_size=self.chunk_size, causal=self.causal)
    if rng is not None:
      self.centroids[...] = ema_update(centroids, directions, clusters, self.ema_decay)
    return self.out(y.reshape(x.shape))
