"""The shared bidirectional encoder, pooling and stochastic depth."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import Encoder, pool
from models.blocks import drop_path


def test_encoder_sees_both_directions_and_keeps_shape():
  enc = Encoder(dim=16, num_layers=2, num_heads=2, mlp_dim=32, max_len=12, mixer='aft_full',
                rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 12, 16))
  y = enc(x)
  assert y.shape == x.shape
  y2 = enc(x.at[:, -1].multiply(-3.0))
  assert float(jnp.abs(y[:, 0] - y2[:, 0]).max()) > 1e-4  # the first position sees the last


def test_mean_pool_ignores_masked_positions():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3))
  mask = jnp.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
  got = pool(x.at[0, 2:].set(1e6), 'mean', mask)
  np.testing.assert_allclose(got[0], x[0, :2].mean(0), rtol=1e-6)
  np.testing.assert_allclose(got[1], x[1].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(pool(x, 'cls'), x[:, 0])
  with pytest.raises(ValueError, match='pooling'):
    pool(x, 'max')


def test_drop_path_drops_whole_examples_and_keeps_the_mean():
  x = jnp.ones((4000, 3, 2))
  y = drop_path(x, 0.25, jax.random.key(0))
  per_example = y.reshape(4000, -1)
  assert bool(jnp.all((per_example == 0).all(1) | (per_example == 1 / 0.75).all(1)))
  assert abs(float(y.mean()) - 1.0) < 0.05
  np.testing.assert_array_equal(drop_path(x, 0.25, None), x)


def test_stack_drop_path_rises_linearly_to_the_rate():
  enc = Encoder(dim=8, num_layers=3, num_heads=2, mlp_dim=8, max_len=4, mixer='softmax',
                drop_path_rate=0.2, rngs=nnx.Rngs(0))
  assert [b.drop_path_rate for b in enc.blocks.layers] == pytest.approx([0.0, 0.1, 0.2])
