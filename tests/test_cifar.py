"""CIFAR-10 autoregressive task: archive reader, TFDS path, augmentation, bits/dim, sampling."""
import io
import pickle
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import eval as eval_lib
import train
from configs import cifar10 as cifar_config
from data import pixels
from data.cifar10 import TfdsImages, read_cifar10_archive
from models import CausalLM, generate
from tests.helpers import read_metrics
from evaluators.units import bits
from tasks import image_lm


def write_archive(path, per_batch=3):
  """A tiny cifar-10-python.tar.gz in the real format; pixel values encode (image, channel)."""
  rng = np.random.default_rng(0)
  expected = {'train': ([], []), 'test': ([], [])}
  with tarfile.open(path, 'w:gz') as tar:
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name in names:
      data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
      labels = rng.integers(0, 10, per_batch).tolist()
      split = 'test' if name == 'test_batch' else 'train'
      expected[split][0].append(data)
      expected[split][1].extend(labels)
      blob = pickle.dumps({b'data': data, b'labels': labels, b'batch_label': name.encode()})
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  return {k: (np.concatenate(v[0]), np.asarray(v[1])) for k, v in expected.items()}


def test_archive_reader_shapes_labels_order_layout(tmp_path):
  expected = write_archive(tmp_path / 'c.tar.gz')
  for split, n in (('train', 15), ('test', 3)):
    images, labels = read_cifar10_archive(str(tmp_path / 'c.tar.gz'), split)
    assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected[split][1])
    rows = expected[split][0]
    # row = R plane (1024 bytes), G plane, B plane, each raster order
    np.testing.assert_array_equal(images[1, 2, 5, 0], rows[1, 0 * 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(images[1, 2, 5, 2], rows[1, 2 * 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(images[-1, 31, 31, 1], rows[-1, 1 * 1024 + 1023])


def test_missing_or_corrupt_archive_names_file_and_field(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'nope.tar.gz.*config.data.path'):
    read_cifar10_archive(str(tmp_path / 'nope.tar.gz'), 'train')
  write_archive(tmp_path / 'c.tar.gz')
  raw = open(tmp_path / 'c.tar.gz', 'rb').read()
  open(tmp_path / 'cut.tar.gz', 'wb').write(raw[:len(raw) // 2])
  with pytest.raises(ValueError, match=r'cut.tar.gz.*config.data.path.*not a readable'):
    read_cifar10_archive(str(tmp_path / 'cut.tar.gz'), 'train')


def test_tfds_data_source_under_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    src = TfdsImages('cifar10', 'train', None)
    assert len(src) == 6
    assert src[0].shape == (32, 32, 3) and src[0].dtype == np.uint8


def test_augmentation_flips_width_and_stays_in_range():
  image = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
  flips = set()
  for seed in range(40):
    out = pixels.augment(image, np.random.default_rng(seed), max_offset=0)
    flipped = np.array_equal(out, image[:, ::-1])
    assert flipped or np.array_equal(out, image)
    flips.add(flipped)
    shifted = pixels.augment(image, np.random.default_rng(seed), max_offset=10)
    assert shifted.min() >= 0 and shifted.max() <= 255
    base = image[:, ::-1] if flipped else image
    inside = (base >= 10) & (base <= 245)
    offsets = np.unique(shifted[inside] - base[inside].astype(int))
    assert len(offsets) == 1 and -10 <= offsets[0] <= 10
  assert flips == {True, False}


def tiny_model(**kw):
  # Built outside any mesh: no eager-sharding workaround needed.
  return CausalLM(vocab_size=256, dim=32, num_layers=1, num_heads=4, mlp_dim=64, max_len=48,
                  mixer='softmax', start_token=True, rngs=nnx.Rngs(0), **kw)


def test_uniform_output_is_exactly_8_bits_per_dim():
  m = tiny_model()
  m.head.kernel[...] = jnp.zeros_like(m.head.kernel[...])
  m.head.bias[...] = jnp.zeros_like(m.head.bias[...])
  tokens = jax.random.randint(jax.random.key(0), (3, 48), 0, 256)
  total, count = image_lm.Task(quick_config()).nll(m, {'tokens': tokens})
  assert count == 3 * 48
  np.testing.assert_allclose(bits(total / count), 8.0, rtol=1e-6)


def test_decoding_gives_the_parallel_logits_on_the_sampled_image():
  m = tiny_model()
  image = nnx.jit(generate, static_argnums=2)(m, jnp.zeros((2, 1), jnp.int32), 48,
                                               jax.random.key(3))
  parallel = m(image)
  cache, logits = m.init_cache(2, 48), []
  for t in range(48):
    step_logits, cache = m.step(image[:, max(t - 1, 0):max(t, 1)], cache)
    logits.append(step_logits)
  np.testing.assert_allclose(jnp.concatenate(logits, 1), parallel, atol=1e-4)


def quick_config(**overrides):
  c = cifar_config.get_config('quick')
  c.data.update(image_shape=(8, 8, 3), num_valid=20)
  c.model.update(dim=32, num_layers=1, mlp_dim=64, max_len=192)
  c.num_steps, c.log_every, c.checkpoint_every = 16, 1, 8
  c.evals.valid.every = 8
  c.optim.update(lr=1e-2, warmup_steps=2)
  c.evals.samples.num = 3
  c.update(overrides)
  return c


def test_quick_run_learns_evaluates_and_samples(tmp_path):
  c = quick_config()
  result = train.train_and_evaluate(c, str(tmp_path))
  rows = read_metrics(tmp_path)
  assert np.mean([r['loss'] for r in rows[-3:]]) < np.mean([r['loss'] for r in rows[:3]]) - 0.3
  start, end = read_metrics(tmp_path, 'valid')[0], read_metrics(tmp_path, 'valid')[-1]
  assert end['bits'] < start['bits'] - 0.5 and end['tokens'] == 20 * 192
  row = eval_lib.evaluate_checkpoint(c, str(tmp_path), 'test')
  assert row['unit'] == 'bits/dim' and row['tokens'] == 20 * 192
  np.testing.assert_allclose(row['bits'], result['valid']['bits'], rtol=1e-6)
  from PIL import Image
  grid = Image.open(tmp_path / 'samples_step16.png')
  assert grid.size == (2 * 9, 2 * 9)  # 3 images of 8x8 in a 2x2 grid with 1-pixel gaps


def test_paper_settings():
  c = cifar_config.get_config('mixer=softmax')
  assert (c.model.num_layers, c.model.dim, c.model.num_heads, c.model.max_len) == (24, 256, 2, 3072)
  assert (c.optim.lr, c.optim.weight_decay, c.batch_size, c.num_epochs, c.data.max_offset) == (
      3e-3, 0.1, 128, 200, 10)
  assert cifar_config.get_config('size=12x512').model.num_heads == 4
