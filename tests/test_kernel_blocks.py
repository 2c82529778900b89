"""The blockwise kernel-attention engine's custom VJP (mixers/kernel_blocks.py) against
jax.grad of a plain dense float64 reference: gradients in q, k, v and the feature map's
parameters, causal and bidirectional, with per-key log-scales (FAVOR+ softmax features)
and without (ReLU features)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixers.kernel_attention import kernel_attention
from performer.features import feature_map, random_projection


def dense(q, k, v, w, kernel, causal):
  """sum_j A_ij v_j / sum_j A_ij, A_ij = phi(q_i).phi(k_j) exp(logscale_j), the L x L way."""
  q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # head-major
  features = feature_map(w, kernel)
  (q_feat, _), (k_feat, k_logscale) = features(q), features(k)
  if k_logscale is not None:
    k_feat = k_feat * jnp.exp(k_logscale)[..., None]
  a = q_feat @ jnp.swapaxes(k_feat, -1, -2)
  if causal:
    a = jnp.tril(a)
  return jnp.swapaxes((a @ v) / a.sum(-1, keepdims=True), 1, 2)


@pytest.mark.parametrize('kernel', ['softmax', 'relu'])  # log-scales, none
@pytest.mark.parametrize('causal', [True, False])
def test_gradients_match_dense_float64(kernel, causal):
  b, length, h, d, m = 2, 16, 2, 4, 6  # 2 blocks of 8, chunks of 3 (padded in a block)
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    q, k, v = (jnp.asarray(rng.standard_normal((b, length, h, d)) * 2.0) for _ in range(3))
    w = random_projection(jax.random.key(0), m, d).astype(jnp.float64)
    g = jnp.asarray(rng.standard_normal((b, length, h, d)))
    # Every block's state kept (as FAVOR+ runs), or every 2nd: block 1 recomputed from 0's.
    blocked = lambda q, k, v, w: kernel_attention(
        q, k, v, lambda w: feature_map(w, kernel), (w,), causal=causal, chunk_size=3,
        block_size=8, save_every=1 if kernel == 'softmax' else 2)
    reference = lambda q, k, v, w: dense(q, k, v, w, kernel, causal)
    got, want = (jax.jit(jax.value_and_grad(lambda *a, f=f: jnp.sum(f(*a) * g),
                                            argnums=(0, 1, 2, 3)))(q, k, v, w)
                 for f in (blocked, reference))
  assert got[1][0].dtype == jnp.float64
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
