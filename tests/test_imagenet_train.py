"""The ImageNet task end to end on a tiny folder tree: a 2-layer ViT with softmax, AFT-full and
AFT-conv trains through train_and_evaluate; eval.py at two resolutions; exact resume."""
import os

import jax
import numpy as np
import pytest
from flax import nnx

import eval as eval_lib
import train
from configs import imagenet as imagenet_config
from configs.common import override
from models.vit import ViT, patchify, resize_positions
from tasks import imagenet as imagenet_task
from tests.helpers import on_each_batch, read_metrics
from tests.test_imagenet_data import write_tree
from trainlib.checkpoints import Checkpoints
from trainlib.run import Run


def tiny_config(path, mixer='softmax', **overrides):
  c = imagenet_config.get_config(f'mixer={mixer},size=tiny,kernel=3,heads=2')
  c.data.update(path=path, num_classes=3, image_size=16, threads=2, workers=0, repeated_aug=1)
  c.model.update(patch=4, dim=16, num_layers=2, num_heads=2, mlp_dim=32, compute_dtype='float32')
  c.model.mixer_options.aft_full.bias_dim = 8
  c.batch_size, c.num_steps, c.log_every, c.checkpoint_every = 6, 8, 1, 4
  c.optim.update(lr=3e-3, warmup_steps=1)
  c.evals.valid.update(every=0, max_batches=None)
  return override(c, overrides)


PLAIN = {'data.randaugment': '', 'data.mixup': 0.0, 'data.cutmix': 0.0,
         'data.random_erasing': 0.0, 'data.label_smoothing': 0.0, 'data.crop_scale': (0.8, 1.0),
         'model.drop_path_rate': 0.0}


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  return write_tree(tmp_path_factory.mktemp('imagenet'))


# The softmax run also serves as the uninterrupted reference of the resume test, so it keeps
# the augmentations that do not stop a 6-step run from learning; resuming through RandAugment
# and Mixup/CutMix is exact by construction (pipeline state; step keys), tested in isolation.
SOFTMAX = {**PLAIN, 'data.random_erasing': 0.25,
           'model.drop_path_rate': 0.1, 'data.label_smoothing': 0.1}


@pytest.fixture(scope='module')
def conv_run(tree, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('aft_conv'))
  return workdir, train.train_and_evaluate(tiny_config(tree, 'aft_conv', **PLAIN), workdir)


@pytest.fixture(scope='module')
def softmax_run(tree, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('softmax'))
  return workdir, train.train_and_evaluate(tiny_config(tree, 'softmax', **SOFTMAX), workdir)


def assert_loss_falls(workdir):
  losses = [r['loss'] for r in read_metrics(workdir)]
  assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses


def test_softmax_and_aft_full_vits_learn(tree, tmp_path, softmax_run):
  assert_loss_falls(softmax_run[0])
  train.train_and_evaluate(tiny_config(tree, 'aft_full', **PLAIN), str(tmp_path))
  assert_loss_falls(tmp_path)


def test_aft_conv_trains_and_evaluates_at_two_resolutions(tree, conv_run):
  workdir, result = conv_run
  assert_loss_falls(workdir)
  config = tiny_config(tree, 'aft_conv', **PLAIN)
  row = eval_lib.evaluate_checkpoint(config, workdir, 'validation')
  assert row['examples'] == 6 and row["step"] == 8
  np.testing.assert_allclose(row['top1'], result['valid']['top1'])
  config.data.eval_resolution = 24
  bigger = eval_lib.evaluate_checkpoint(config, workdir, 'validation')
  assert bigger['examples'] == 6 and 0 <= bigger['top1'] <= bigger['top5'] <= 1
  assert bigger['loss'] != row['loss']  # another input size, same checkpoint


def test_aft_full_refuses_another_resolution_clearly(tree):
  config = tiny_config(tree, 'aft_full', **{'data.eval_resolution': 24})
  with pytest.raises(ValueError, match='aft_full has parameters per position.*evaluate at 16'):
    imagenet_task.Task(config).build_model(nnx.Rngs(0))


class Killed(Exception):
  pass


def test_killed_and_resumed_run_equals_uninterrupted_run(tree, tmp_path, softmax_run):
  config = tiny_config(tree, 'softmax', **SOFTMAX)
  ref_dir, run_dir = softmax_run[0], str(tmp_path)

  def dies_at_batch_6(n):
    if n == 6:
      raise Killed()

  undo = on_each_batch(dies_at_batch_6, imagenet_task.Task)
  try:
    with pytest.raises(Killed):
      train.train_and_evaluate(config, run_dir)
  finally:
    undo()
  train.train_and_evaluate(config, run_dir)
  states = []
  for d in (ref_dir, run_dir):
    ckpt = Checkpoints(os.path.join(d, 'checkpoints'))
    states.append(ckpt.restore(Run(config, steps=1).state)[1])
    ckpt.close()
  for a, b in zip(*map(jax.tree.leaves, states)):
    np.testing.assert_array_equal(a, b)
  assert [r['loss'] for r in read_metrics(ref_dir)] == [r['loss'] for r in read_metrics(run_dir)]


def test_patchify_and_position_resize():
  images = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
  patches = np.asarray(patchify(images, 4))
  assert patches.shape == (2, 4, 48)
  np.testing.assert_array_equal(patches[1, 3].reshape(4, 4, 3), images[1, 4:, 4:])
  table = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
  np.testing.assert_array_equal(resize_positions(table, (3, 3), (3, 3)), table)
  const = np.ones((9, 5), np.float32)  # a constant table stays constant when resized
  np.testing.assert_allclose(resize_positions(const, (3, 3), (5, 5)), np.ones((25, 5)), atol=1e-5)


def test_vit_without_class_token_and_positions_pools_over_patches():
  """No class token, no positions, global average pooling (AFT-conv's head): with a
  permutation-equivariant mixer, moving whole patches leaves the logits unchanged."""
  model = ViT(num_classes=3, image_size=16, patch=4, dim=16, num_layers=1, num_heads=2,
              mlp_dim=32, mixer='softmax', class_token=False, position=False, pooling='mean',
              rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
  x[1] = np.roll(x[0], 4, axis=1)  # one whole patch: the tokens are permuted
  logits = nnx.jit(lambda m, x: m(x))(model, x)
  np.testing.assert_allclose(logits[0], logits[1], rtol=1e-4, atol=1e-5)


# Two of Table 7's rows (mixer, size, kernel, heads) -> the paper's #Params (M); every row is
# in bench/imagenet_models.py's table (building a 12-layer model costs seconds here).
TABLE7_PARAMS = {('aft_full', 'tiny', 11, 0): 6.3, ('aft_conv', 'small', 11, 16): 20.3}


def test_table7_models_have_the_papers_parameter_counts():
  for (mixer, size, kernel, heads), paper in TABLE7_PARAMS.items():
    c = imagenet_config.get_config(f'mixer={mixer},size={size},kernel={kernel},heads={heads}')
    model = nnx.eval_shape(lambda: imagenet_task.Task(c).build_model(nnx.Rngs(0)))
    count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert abs(count / 1e6 - paper) <= 0.05, (mixer, size, kernel, heads, count)
