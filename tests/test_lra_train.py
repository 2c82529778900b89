"""Each LRA task's config trains a 1-layer model through train_and_evaluate with falling loss;
the dual encoder shares one encoder; bad mixer settings are named."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import train
from configs import lra as lra_config
from configs.common import override
from models.lra import Classifier, DualEncoder
from tests import lra_files
from tests.helpers import read_metrics


@pytest.fixture(scope='module')
def release(tmp_path_factory):
  """lra_release/ with tiny ListOps, AAN and Pathfinder files, an aclImdb folder and a CIFAR
  archive."""
  from tests.test_cifar import write_archive
  root = tmp_path_factory.mktemp('lra_release')
  lra_files.write_listops(root, {'train': 16, 'val': 8, 'test': 8})
  lra_files.write_aan(root, n=16)
  lra_files.write_pathfinder(root, n=21, empty=(5,), size=16)  # 256 tokens: faster
  lra_files.write_aclimdb(root, n=8)
  write_archive(root / 'cifar.tar.gz', per_batch=4)
  return root


PATHS = {'listops': '', 'retrieval': '', 'pathfinder': '', 'text': 'aclImdb',
         'image': 'cifar.tar.gz'}
TRAIN_SIZE = {'listops': 16, 'retrieval': 16, 'pathfinder': 16, 'text': 16, 'image': 18}


def tiny(task, root, **more):
  c = lra_config.get_config(f'task={task},mixer=softmax')
  if task != 'listops':  # one task runs the evaluator (each compile costs seconds)
    c.evals = {}
  return override(c, {
      'data.path': str(root / PATHS[task]), 'model.dim': 16, 'model.num_layers': 1,
      'model.num_heads': 2, 'model.mlp_dim': 32, 'model.head_dim': 16,
      'model.dropout_rate': 0.0, 'batch_size': TRAIN_SIZE[task], 'num_steps': 6,
      'optim.lr': 1e-2, 'optim.warmup_steps': 1, 'optim.schedule': 'constant',
      'log_every': 1, 'checkpoint_every': 6, **(
          {'data.max_length': 48} if task in ('listops', 'text', 'retrieval') else {}),
      **({'data.resolution': 16} if task == 'pathfinder' else {}),
      # the released [u, v] head here; test_dual_encoder_is_one_shared_encoder checks 'nli'
      **({'model.interaction': 'concat'} if task == 'retrieval' else {}), **more})


@pytest.mark.parametrize('task', lra_config.TASK_NAMES)
def test_each_task_trains_with_falling_loss(task, release, tmp_path):
  # The batch is the whole training split, so each step sees the same examples.
  result = train.train_and_evaluate(tiny(task, release), str(tmp_path))
  losses = [r['loss'] for r in read_metrics(tmp_path)]
  assert len(losses) == 6 and np.mean(losses[-2:]) < np.mean(losses[:2]), losses
  if task == 'listops':
    assert 0.0 <= result['valid']['top1'] <= 1.0 and result['valid']['examples'] == 8


def test_every_variant_builds_a_config():
  for task in lra_config.TASK_NAMES:
    paper = lra_config.get_config(f'task={task}')
    small = lra_config.get_config(f'task={task},variant=small')
    released = lra_config.get_config(f'task={task},variant=released')
    assert (small.model.num_layers, small.model.dim, small.model.pooling) == (2, 64, 'mean')
    assert paper.model.pooling == 'cls' and small.num_steps == 50_000
    assert paper.optim.grad_clip == 0.0 and released.data.name == task
  assert lra_config.get_config('task=retrieval').model.interaction == 'nli'
  assert lra_config.get_config('task=retrieval,variant=released').model.interaction == 'concat'
  text = lra_config.get_config('task=text,variant=released')
  assert (text.data.max_length, text.model.dim, text.model.num_layers) == (1000, 256, 4)
  conv = lra_config.get_config('task=image,mixer=aft_conv')
  assert conv.model.pooling == 'mean'
  assert tuple(conv.model.mixer_options.aft_conv.spatial_shape) == (32, 32)
  with pytest.raises(ValueError, match='quick'):
    lra_config.get_config('task=text,quick')
  with pytest.raises(ValueError, match='variant must be one of'):
    lra_config.get_config('task=text,variant=big')


ENCODER = dict(vocab_size=20, dim=16, num_layers=1, num_heads=2, mlp_dim=32, length=12,
               mixer='softmax', pooling='mean')


@nnx.jit
def _dual(model, tokens, mask):
  """(logits, the head applied to each text encoded alone, features of the swapped pair, u, v)"""
  u = model.encoder(tokens[:, 0], mask[:, 0])  # each text alone through the encoder
  v = model.encoder(tokens[:, 1], mask[:, 1])
  x = jnp.concatenate([u, v, u * v, u - v], -1)
  for i, layer in enumerate(model.head):
    x = layer(x) if i == len(model.head) - 1 else jax.nn.relu(layer(x))
  return model(tokens, mask), x, model.features(tokens[:, ::-1], mask[:, ::-1]), u, v


def test_dual_encoder_is_one_shared_encoder():
  model = DualEncoder(num_classes=2, head_dim=8, interaction='nli', rngs=nnx.Rngs(0), **ENCODER)
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 20, (3, 2, 12)), jnp.int32)
  tokens = tokens.at[:, 1, 9:].set(0)  # padding in the second texts
  logits, expected, swapped, u, v = _dual(model, tokens, tokens != 0)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  d = ENCODER['dim']
  close(swapped[:, :d], v)
  close(swapped[:, d:2 * d], u)
  close(swapped[:, 2 * d:3 * d], u * v)  # u*v is symmetric, u-v changes sign
  close(swapped[:, 3 * d:], v - u)


@nnx.jit
def _pooled(enc, tokens, mask):
  """(the encoder's pooled output, the Encoder's output [batch, positions, dim])"""
  x = enc.embed(tokens)
  if enc.cls is not None:
    x = jnp.concatenate([jnp.broadcast_to(enc.cls[...], (x.shape[0], 1, x.shape[2])), x], 1)
  return enc(tokens, mask), enc.encoder(x + enc.pos[...])


@pytest.mark.parametrize('pooling', ['mean', 'cls'])
def test_pooling_reads_unpadded_positions_or_the_class_token(pooling):
  enc = Classifier(num_classes=3, head_dim=8, rngs=nnx.Rngs(1),
                   **{**ENCODER, 'pooling': pooling, 'position': 'learned'}).encoder
  tokens = jnp.asarray(np.random.default_rng(1).integers(1, 20, (2, 12)), jnp.int32)
  tokens = tokens.at[0, 7:].set(0)
  pooled, h = _pooled(enc, tokens, tokens != 0)
  expected = h[:, 0] if pooling == 'cls' else jnp.stack([h[0, :7].mean(0), h[1].mean(0)])
  np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='reads 12 tokens, got 10'):
    enc(tokens[:, :10])


def test_a_mixer_that_cannot_be_built_names_mixer_mode_and_length():
  with pytest.raises(ValueError, match=r"mixer 'aft_conv' in bidirectional mode.*length 13 "
                                       r'\(the data length 12 \+ the class token\)'):
    Classifier(num_classes=2, head_dim=8, rngs=nnx.Rngs(0),
               **{**ENCODER, 'mixer': 'aft_conv', 'pooling': 'cls',
                  'mixer_options': {'spatial_shape': (4, 4)}})
