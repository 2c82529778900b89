"""The scanned layer layout (parameters stacked on a 'layers' axis, one nnx.scan) and remat
compute what the Python loop over layers computes: forward, gradients, decoding, Buffers, a
training run with its checkpoints and resume."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import train
from mixers import update_all_buffers
from models import CausalLM, Encoder
from models.causal_lm import generate
from tests.helpers import read_metrics, tiny_config
from tests.test_train import final_params

LAYERS = 2
MODEL = dict(vocab_size=256, dim=32, num_layers=LAYERS, num_heads=4, mlp_dim=64, max_len=16,
             dropout_rate=0.1)


def lm(mixer='softmax', options=None, **layout):
  return CausalLM(**MODEL, mixer=mixer, mixer_options=options, rngs=nnx.Rngs(0), **layout)


def by_path(tree, scanned: bool) -> dict:
  """{path: array} of a model state or its gradients, the looped layers' arrays stacked as the
  scanned layout holds them."""
  d = nnx.to_pure_dict(tree)
  if not scanned:
    layers = d['blocks']['layers']
    d['blocks']['layers'] = jax.tree.map(lambda *a: np.stack(a),
                                         *(layers[i] for i in sorted(layers)))
  leaves = jax.tree_util.tree_leaves_with_path(d)
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def loss_and_grads(model, tokens, key):
  def loss(m):
    return jnp.mean(jax.nn.log_softmax(m(tokens, rng=key))[..., 0])
  return nnx.jit(nnx.value_and_grad(loss))(model)


@pytest.fixture(scope='module')
def batch():
  return jax.random.randint(jax.random.key(1), (2, 16), 0, 256), jax.random.key(2)


@pytest.fixture(scope='module')
def looped(batch):
  model = lm()
  return model, loss_and_grads(model, *batch)


def test_scanned_layout_stacks_the_looped_parameters(looped):
  model, _ = looped
  scanned = lm(scan_layers=True)
  kernel = scanned.blocks.layers.mlp.up.kernel
  assert kernel.shape == (LAYERS, 32, 64)
  assert kernel.get_metadata()['out_sharding'] == ('layers', 'embed', 'mlp')
  assert len(scanned.blocks) == LAYERS
  assert scanned.blocks[1].mlp.up.kernel.shape == (32, 64)  # one layer, as a Block
  want, got = by_path(nnx.state(model), False), by_path(nnx.state(scanned), True)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize('scan,remat', [(False, 'full'), (True, 'dots')])
def test_every_layout_and_remat_gives_the_looped_loss_and_gradients(looped, batch, scan, remat):
  """With dropout on: the per-layer keys are the same in both layouts."""
  _, (loss, grads) = looped
  loss2, grads2 = loss_and_grads(lm(scan_layers=scan, remat=remat), *batch)
  np.testing.assert_allclose(loss2, loss, rtol=1e-6)
  want, got = by_path(grads, False), by_path(grads2, scan)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=2e-6, err_msg=k)


def test_unknown_remat_policy_is_an_error():
  with pytest.raises(ValueError, match="model.remat must be one of"):
    lm(remat='some')


def test_drop_path_schedule_is_the_same_scanned():
  kw = dict(dim=32, num_layers=LAYERS, num_heads=4, mlp_dim=64, max_len=8, mixer='softmax',
            drop_path_rate=0.5)
  x = jax.random.normal(jax.random.key(0), (8, 8, 32))
  key = jax.random.key(3)
  looped = Encoder(**kw, rngs=nnx.Rngs(0))(x, rng=key)
  scanned = Encoder(**kw, scan_layers=True, rngs=nnx.Rngs(0))(x, rng=key)
  no_drop = Encoder(**kw, rngs=nnx.Rngs(0))(x)
  np.testing.assert_allclose(scanned, looped, rtol=1e-5, atol=1e-6)
  assert not np.allclose(looped, no_drop, atol=1e-3)  # some branch was dropped


@pytest.mark.parametrize('mixer', ['softmax', 'sinkhorn'])  # a decode step; the parallel fallback
def test_decoding_in_the_scanned_layout(mixer):
  prompt = jax.random.randint(jax.random.key(4), (2, 3), 0, 256)
  key = jax.random.key(5)
  sample = nnx.jit(generate, static_argnums=2)
  looped, scanned = lm(mixer), lm(mixer, scan_layers=True)
  tokens = sample(scanned, prompt, 8, key)
  np.testing.assert_array_equal(tokens, sample(looped, prompt, 8, key))


def test_buffers_update_in_every_scanned_layer():
  """Performer's projection is redrawn in every layer, each its own draw; routing centroids
  move in the training forward pass as in the looped layout."""
  model = lm('performer', {'redraw_every': 2}, scan_layers=True)
  before = np.asarray(model.blocks.layers.mixer.projection[...])
  nnx.jit(update_all_buffers)(model, jnp.int32(0), jax.random.key(6))
  after = np.asarray(model.blocks.layers.mixer.projection[...])
  assert after.shape[0] == LAYERS
  assert all(not np.allclose(before[i], after[i]) for i in range(LAYERS))
  assert not np.allclose(after[0], after[1])
  nnx.jit(update_all_buffers)(model, jnp.int32(1), jax.random.key(6))  # not a redraw step
  np.testing.assert_array_equal(model.blocks.layers.mixer.projection[...], after)

  tokens = jax.random.randint(jax.random.key(7), (2, 16), 0, 256)
  looped, scanned = lm('routing'), lm('routing', scan_layers=True)
  initial = np.asarray(scanned.blocks.layers.mixer.centroids[...])
  for m in (looped, scanned):
    nnx.jit(lambda m: m(tokens, rng=jax.random.key(8)))(m)
  moved = np.asarray(scanned.blocks.layers.mixer.centroids[...])
  for i in range(LAYERS):
    np.testing.assert_allclose(moved[i], looped.blocks[i].mixer.centroids[...], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(moved[i], initial[i])


def test_scanned_run_follows_the_looped_run(reference, zip_path, tmp_path):
  """The tiny Enwik8 run, scanned with remat, gives the looped run's losses; its checkpoint
  (stacked parameters) restores to the looped run's parameters; its samples evaluator decodes
  in the scanned layout."""
  ref_dir, ref = reference
  config = tiny_config(zip_path, **{'model.scan_layers': True, 'model.remat': 'dots'})
  result = train.train_and_evaluate(config, str(tmp_path))
  np.testing.assert_allclose([r['loss'] for r in read_metrics(tmp_path)],
                             [r['loss'] for r in read_metrics(ref_dir)], rtol=1e-5)
  assert result['valid']['bits'] == pytest.approx(ref['valid']['bits'], rel=1e-5)
  assert isinstance(result['sample']['sample'], str)
  _, ref_state = final_params(tiny_config(zip_path), ref_dir)
  step, state = final_params(config, str(tmp_path))
  assert step == 12
  want, got = by_path(ref_state['params'], False), by_path(state['params'], True)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=k)
