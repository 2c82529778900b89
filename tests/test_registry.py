"""The registry: one build() for every mixer; unknown names and options list what exists."""
import ast
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.sharding import NamedSharding

import mixers

COMMON = dict(dim=16, num_heads=2, max_len=8, causal=True)
ROOT = pathlib.Path(__file__).resolve().parents[1]


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
  """Built as the README shows, outside any mesh: parameters are simply unsharded."""
  try:
    m = mixers.build(name, rngs=nnx.Rngs(0), dim=32, num_heads=4, max_len=96, causal=causal)
  except ValueError as e:
    assert causal and 'no causal form' in str(e)  # the only allowed refusal
    return
  assert m(jnp.ones((2, 80, 32))).shape == (2, 80, 32)


def test_inside_a_mesh_parameters_follow_the_logical_axis_rules():
  mesh = jax.make_mesh((1,), ('fsdp',), axis_types=(jax.sharding.AxisType.Auto,))
  with jax.set_mesh(mesh), nnx.logical_axis_rules((('embed', 'fsdp'), ('heads', None))):
    m = mixers.build('performer', rngs=nnx.Rngs(0), **COMMON)
  kernel = m.q.kernel[...]
  assert isinstance(kernel.sharding, NamedSharding)
  assert kernel.sharding.mesh == mesh and tuple(kernel.sharding.spec) == ('fsdp', None)


def test_option_defaults_are_the_constructors():
  assert mixers.option_defaults('performer') == {
      'num_features': 256, 'kernel': 'softmax', 'orthogonal': True, 'redraw_every': 0,
      'chunk_size': 128, 'block_size': 256}
  assert mixers.option_defaults('aft_simple') == {}
  for name in mixers.names():
    assert list(mixers.option_defaults(name)) == mixers.options(name)


def test_importing_mixers_loads_no_family_package():
  """The contract does not import aft or performer; the registry finds them when asked."""
  code = ('import sys, mixers\n'
          'assert "aft" not in sys.modules and "performer" not in sys.modules\n'
          'assert "performer" in mixers.names() and "aft.modules" in sys.modules\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for path in (ROOT / 'mixers').glob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      imported = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                  [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
      assert not [m for m in imported if m.split('.')[0] in ('aft', 'performer')], path


def test_double_registration_is_an_error():
  with pytest.raises(ValueError, match='registered twice'):
    mixers.register('softmax')(type('Dup', (), {}))
