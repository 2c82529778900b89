"""Content-based sparse mixers (lsh, routing, sinkhorn) against the dense float64 references
(mixers/references.py), with who-sees-whom written out from each rule's definition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixers import lsh, references, routing, sinkhorn
from mixers.base import Buffer
from mixers.bucketed import unit
from mixers.registry import build

CHUNK, N_BUCKETS = 8, 6


# ---------------------------------------------------------------- who sees whom (numpy)
# The references are softmax over the multiset of keys each query sees: counts [b, h, T, T].

def bucket_mask(buckets, causal, same_bucket):
  """Who sees whom for one hashing round, from the rule's definition (no sorting kernel).

  Bidirectional: chunks of the (bucket, position) order, own chunk and the previous one.
  Causal: chunks counted within each bucket by rank, own and previous, positions <= own.
  A token sees itself only when it sees nothing else."""
  t = len(buckets)
  pos = np.arange(t)
  same = buckets[:, None] == buckets[None]
  if causal:
    rank = np.array([np.sum(buckets[:i] == buckets[i]) for i in range(t)]) // CHUNK
    near = (rank[None] == rank[:, None]) | (rank[None] == rank[:, None] - 1)
    seen = same & near & (pos[None] <= pos[:, None])
  else:
    sorted_index = np.empty(t, int)
    sorted_index[np.lexsort((pos, buckets))] = pos
    chunk = sorted_index // CHUNK
    seen = (chunk[None] == chunk[:, None]) | (chunk[None] == chunk[:, None] - 1)
    if same_bucket:
      seen &= same
  others = seen & ~np.eye(t, dtype=bool)
  return np.where(others.any(1, keepdims=True), others, np.eye(t, dtype=bool))


def sorted_block_counts(perm_index, t, block, causal):
  """Hard Sinkhorn: block i sees block perm_index[i] (none if -1) and itself."""
  pos = np.arange(t)
  blk = pos // block
  own = (blk[None] == blk[:, None]) & ((pos[None] <= pos[:, None]) | (not causal))
  return own.astype(int) + (blk[None] == perm_index[blk][:, None])


def unit64(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- cases with fixed structure

def normal(seed, *shape, scale=1.0):
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def case(kind, t, causal):
  """(function of arrays, float64 reference of the same arrays, arrays)."""
  rng = np.random.default_rng(t)
  x = [normal(i, 2, t, 2, 8) for i in range(3)]
  if kind in ('lsh', 'routing'):
    rounds = 2 if kind == 'lsh' else 1
    buckets = rng.integers(0, N_BUCKETS, (2, 2, rounds, t))
    same = kind == 'routing'
    counts = np.array([[sum(bucket_mask(bb[r], causal, same) for r in range(rounds))
                        for bb in row] for row in buckets], float)
    opts = dict(chunk_size=CHUNK, causal=causal)
    if kind == 'lsh':
      fn = lambda qk, v: lsh.lsh_attention(qk, v, buckets, n_buckets=N_BUCKETS, **opts)
    else:
      fn = lambda qk, v: routing.routing_attention(qk, v, buckets[:, :, 0], n_clusters=N_BUCKETS,
                                                   **opts)
    return fn, lambda qk, v: references.softmax_attention(qk, unit64(qk), v, weights=counts), x[::2]
  n = -(-t // CHUNK)
  fn = lambda q, k, v, p: sinkhorn.sinkhorn_attention(q, k, v, p, block_size=CHUNK, causal=causal)
  past = np.tri(n, k=-1, dtype=bool) if causal else np.ones((n, n), bool)
  if kind == 'sinkhorn_hard':  # a random block order; causal: a random earlier block each
    draw = lambda: (np.array([rng.choice(i) if i else -1 for i in range(n)]) if causal
                    else rng.permutation(n))
    index = np.array([[draw() for _ in range(2)] for _ in range(2)])
    perm = (index[..., None] == np.arange(n)).astype(np.float32)
    counts = np.array([[sorted_block_counts(ix, t, CHUNK, causal) for ix in row] for row in index],
                      float)
    return ((lambda q, k, v: fn(q, k, v, perm)),
            (lambda *a: references.softmax_attention(*a, weights=counts)), x)
  perm = np.where(past, np.exp(rng.standard_normal((2, 2, n, n))), 0.0)
  perm = (perm / np.maximum(perm.sum(-1, keepdims=True), 1e-30)).astype(np.float32)
  return (fn, lambda *a: references.sinkhorn_attention(*a, block=CHUNK, causal=causal),
          x + [perm])


KINDS = ['lsh', 'routing', 'sinkhorn_hard', 'sinkhorn_soft']


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('t', [63, 300])
@pytest.mark.parametrize('kind', KINDS)
def test_matches_dense_reference_forward_and_gradient(kind, t, causal):
  fn, reference, args = case(kind, t, causal)
  w = normal(7, 2, t, 2, 8)

  @jax.jit
  def forward_and_vjp(*a):
    y, vjp = jax.vjp(fn, *a)
    return y, vjp(jnp.asarray(w))

  y, grads = forward_and_vjp(*args)
  np.testing.assert_allclose(y, reference(*args), atol=2e-5, rtol=1e-4)
  # Gradient: the analytic directional derivative against central differences of the
  # float64 reference (the structure is fixed, so the reference is smooth).
  f64 = [np.asarray(a, np.float64) for a in args]
  rng = np.random.default_rng(1)
  for i, g in enumerate(grads):
    direction = rng.standard_normal(f64[i].shape) * (f64[i] != 0 if i == 3 else 1)
    eps = 1e-5
    plus = [a + eps * direction if j == i else a for j, a in enumerate(f64)]
    minus = [a - eps * direction if j == i else a for j, a in enumerate(f64)]
    numeric = np.sum((reference(*plus) - reference(*minus)) * w) / (2 * eps)
    np.testing.assert_allclose(np.sum(np.asarray(g, np.float64) * direction), numeric,
                               rtol=1e-3, atol=1e-3)
  # Extreme inputs (scores near 1e8) stay finite, forward and backward.
  y, grads = forward_and_vjp(*[a * 1e4 if i < 3 else a for i, a in enumerate(args)])
  assert np.isfinite(y).all() and all(np.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('kind', KINDS)
def test_bfloat16_inputs_match_the_reference(kind):
  fn, reference, args = case(kind, 63, True)
  n_inputs = 2 if kind in ('lsh', 'routing') else 3
  out = jax.jit(fn)(*[a.astype(jnp.bfloat16) if i < n_inputs else a for i, a in enumerate(args)])
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), reference(*args), atol=5e-2)


# ---------------------------------------------------------------- LSH hashing

def test_lsh_identical_directions_always_share_a_bucket():
  x = normal(0, 1, 32, 2, 8)
  x[:, 20], x[:, 31] = x[:, 3], 2.5 * x[:, 3]
  hashes = jax.jit(lambda key: lsh.lsh_buckets(x, lsh.random_rotations(key, 2, 3, 8, 8)))
  for seed in range(20):
    buckets = hashes(jax.random.key(seed))
    for twin in (20, 31):
      np.testing.assert_array_equal(buckets[..., twin], buckets[..., 3])


def test_lsh_collision_rate_falls_with_angle():
  d, draws = 16, 4000
  angles = np.deg2rad([0, 30, 60, 90, 120, 180])
  a, b = unit64(np.random.default_rng(0).standard_normal((2, d))[:, None, :])[:, 0]
  b = unit64(b - (a @ b) * a)  # orthonormal pair spanning the plane of rotation
  pairs = np.stack([np.stack([a, np.cos(th) * a + np.sin(th) * b]) for th in angles])
  x = jnp.asarray(pairs.reshape(1, -1, 1, d), jnp.float32)
  buckets = lsh.lsh_buckets(x, lsh.random_rotations(jax.random.key(0), 1, draws, d, 4))
  buckets = np.asarray(buckets).reshape(draws, len(angles), 2)
  rate = (buckets[..., 0] == buckets[..., 1]).mean(0)
  assert rate[0] == 1.0 and rate[-1] == 0.0
  assert (np.diff(rate) < -0.05).all(), rate


# ---------------------------------------------------------------- routing centroids

def test_routing_ema_moves_centroids_toward_assigned_vectors():
  centroids = unit(jnp.asarray(normal(0, 2, 5, 8)))
  x = unit(jnp.asarray(normal(1, 3, 40, 2, 8)))
  clusters = jax.jit(routing.assign_clusters)(x, centroids)
  new = np.asarray(jax.jit(routing.ema_update, static_argnums=3)(centroids, x, clusters, 0.9))
  onehot = np.asarray(jax.nn.one_hot(clusters, 5))
  sums = np.einsum('bhtk,bthd->hkd', onehot, np.asarray(x))
  means = sums / np.maximum(np.linalg.norm(sums, axis=-1, keepdims=True), 1e-30)
  assigned = onehot.sum((0, 2)) > 0
  old_cos = np.sum(np.asarray(centroids) * means, -1)
  new_cos = np.sum(new * means, -1)
  assert (new_cos[assigned] > old_cos[assigned]).all()
  np.testing.assert_allclose(np.linalg.norm(new, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(new[~assigned], np.asarray(centroids)[~assigned])


def test_routing_centroids_move_in_training_and_resume_bitwise():
  graphdef, state = nnx.split(build_mixer('routing', ema_decay=0.5))
  x = [jax.random.normal(jax.random.key(i), (2, 40, 16)) for i in range(2)]

  @jax.jit
  def train_forward(state, x, key):
    model = nnx.merge(graphdef, state)
    model(x, rng=key)
    return nnx.state(model)

  s1 = train_forward(state, x[0], jax.random.key(0))
  s2 = train_forward(s1, x[1], jax.random.key(1))
  assert not np.array_equal(s1['centroids'][...], state['centroids'][...])
  # Resume: step 2 again from a host copy of the step-1 state gives the same bits.
  restored = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), s1)
  np.testing.assert_array_equal(s2['centroids'][...],
                                train_forward(restored, x[1], jax.random.key(1))['centroids'][...])


# ---------------------------------------------------------------- Sinkhorn normalisation

def test_sinkhorn_is_doubly_stochastic():
  logits = jnp.asarray(normal(0, 2, 3, 7, 7))
  p = np.exp(np.asarray(jax.jit(sinkhorn.sinkhorn, static_argnums=(1, 2))(logits, 50, False),
                        np.float64))
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(p.sum(-2), 1.0, atol=1e-3)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.exp(sinkhorn.sinkhorn(x, 8, False))[..., 0])))
  assert np.isfinite(grad(1e8 * logits)).all()  # extreme logits: finite gradients


def test_causal_sinkhorn_mixes_only_past_blocks_and_is_causal():
  logits = jnp.asarray(normal(0, 2, 3, 7, 7, scale=2.0))
  causal_sinkhorn = jax.jit(lambda x: sinkhorn.sinkhorn(x, 8, causal=True))
  log_p = causal_sinkhorn(logits)
  p = np.exp(np.asarray(log_p, np.float64))
  np.testing.assert_array_equal(np.triu(np.ones((7, 7))) * p, 0.0)
  np.testing.assert_allclose(p[..., 1:, :].sum(-1), 1.0, atol=1e-5)
  # A change in block 3 moves the logits of later rows and of column 3 only.
  changed = logits.at[..., 4:, :].add(5.0).at[..., :, 3].add(-3.0)
  later = causal_sinkhorn(changed)
  np.testing.assert_array_equal(np.asarray(later)[..., :4, :], np.asarray(log_p)[..., :4, :])


# ---------------------------------------------------------------- through the registry

OPTS = {'lsh': dict(chunk_size=8, n_buckets=4), 'routing': dict(chunk_size=8, n_clusters=4),
        'sinkhorn': dict(block_size=8)}


def build_mixer(name, causal=True, **opts):
  return build(name, dim=16, num_heads=2, max_len=64, causal=causal, rngs=nnx.Rngs(0),
               **{**OPTS[name], **opts})


def future_changed(seed=0, t=40, cut=25):
  x = jax.random.normal(jax.random.key(seed), (2, t, 16))
  return x, x.at[:, cut:].set(100.0 * jax.random.normal(jax.random.key(seed + 1), (2, t - cut, 16)))


@pytest.mark.parametrize('name', sorted(OPTS))
def test_training_mode_is_causal_and_finite(name):
  """Training mode (rng: Gumbel noise, fresh rotations, centroid update) through the registry:
  bitwise causal; extreme inputs give finite outputs and gradients, bfloat16 parameters and
  inputs finite outputs."""
  graphdef, params, rest = nnx.split(build_mixer(name), nnx.Param, ...)

  def forward(params, x):  # copy=True: routing writes its Buffer inside the trace
    return nnx.merge(graphdef, params, rest, copy=True)(x, rng=jax.random.key(2))

  @jax.jit
  def forward_and_grad(params, x):
    y, vjp = jax.vjp(lambda p: forward(p, x), params)
    return y, vjp(jnp.ones_like(y))[0]

  x, x2 = future_changed()
  y, y2 = forward_and_grad(params, x)[0], forward_and_grad(params, x2)[0]
  np.testing.assert_array_equal(y[:, :25], y2[:, :25])
  assert not np.allclose(y[:, 25:], y2[:, 25:])
  y, grads = forward_and_grad(params, 1e4 * x)
  assert np.isfinite(y).all()
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  low = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  assert np.isfinite(np.asarray(jax.jit(forward)(low, x.astype(jnp.bfloat16)), np.float32)).all()


@pytest.mark.parametrize('name', sorted(OPTS))
def test_bidirectional_training_mode_sees_the_future_and_stays_finite(name):
  graphdef, state = nnx.split(build_mixer(name, causal=False))
  run = jax.jit(lambda x: nnx.merge(graphdef, state, copy=True)(x, rng=jax.random.key(2)))
  x, x2 = future_changed()
  assert not np.allclose(run(x)[:, :25], run(x2)[:, :25])
  assert np.isfinite(run(1e4 * x)).all()


@pytest.mark.parametrize('name', sorted(OPTS))
def test_evaluation_mode_is_bitwise_causal_and_leaves_buffers(name):
  graphdef, state = nnx.split(build_mixer(name))

  @jax.jit
  def run(x):
    model = nnx.merge(graphdef, state, copy=True)
    return model(x), nnx.state(model, Buffer)

  x, x2 = future_changed(seed=3)
  (y, buffers), (y2, _) = run(x), run(x2)
  np.testing.assert_array_equal(y[:, :25], y2[:, :25])
  for a, b in zip(jax.tree.leaves(buffers), jax.tree.leaves(nnx.state(state, Buffer))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('name,opts,message', [
    ('lsh', dict(n_buckets=3), 'n_buckets must be even'),
    ('routing', dict(ema_decay=1.0), 'ema_decay'),
    ('sinkhorn', dict(temperature=0.0), 'temperature'),
    ('sinkhorn', dict(n_buckets=4), 'unknown option'),
])
def test_option_errors(name, opts, message):
  with pytest.raises(ValueError, match=message):
    build_mixer(name, **opts)
