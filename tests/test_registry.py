"""The registry: one build() for every mixer; unknown names and options list what exists."""
import pytest
from flax import nnx

import mixers

COMMON = dict(dim=16, num_heads=2, max_len=8, causal=True)


def test_unknown_mixer_lists_registered_ones():
  with pytest.raises(ValueError) as e:
    mixers.build('no_such_mixer', rngs=nnx.Rngs(0), **COMMON)
  assert 'no_such_mixer' in str(e.value)
  for name in mixers.names():
    assert name in str(e.value)


def test_unknown_option_lists_the_mixers_options():
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['window'\].*implementation"):
    mixers.build('softmax', rngs=nnx.Rngs(0), window=4, **COMMON)


@pytest.mark.parametrize('name', mixers.names())
@pytest.mark.parametrize('causal', [False, True])
def test_every_registered_mixer_builds_with_defaults_and_keeps_shape(name, causal):
  import jax.numpy as jnp
  with nnx.use_eager_sharding(False):
    try:
      m = mixers.build(name, rngs=nnx.Rngs(0), dim=32, num_heads=4, max_len=96, causal=causal)
    except ValueError as e:
      assert causal and 'no causal form' in str(e)  # the only allowed refusal
      return
  assert m(jnp.ones((2, 80, 32))).shape == (2, 80, 32)


def test_double_registration_is_an_error():
  with pytest.raises(ValueError, match='registered twice'):
    mixers.register('softmax')(type('Dup', (), {}))
