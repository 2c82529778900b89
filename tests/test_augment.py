"""Invariants of each DeiT augmentation: shapes, value ranges, boxes inside the image, mixed
targets summing to 1, determinism from the seed or key."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from data.augment import batch as aug
from data.augment import host, randaugment


def test_random_resized_crop_box_inside_with_area_and_aspect_in_range():
  for seed in range(200):
    size = (500, 375)
    left, top, right, bottom = host.random_resized_crop_box(np.random.default_rng(seed), size)
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
    w, h = right - left, bottom - top
    assert 0.08 * 0.95 <= w * h / (size[0] * size[1]) <= 1.0
    assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05 or (w, h) == size  # fallback: central crop
  assert (host.random_resized_crop_box(np.random.default_rng(3), (50, 40)) ==
          host.random_resized_crop_box(np.random.default_rng(3), (50, 40)))
  # A very wide image misses 10 times and falls back to the central crop at ratio 4/3.
  assert host.random_resized_crop_box(np.random.default_rng(0), (1000, 10),
                                      scale=(0.99, 1.0)) == (493, 0, 506, 10)


def test_flip_is_identity_or_mirror_and_both_happen():
  image = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
  seen = set()
  for seed in range(30):
    out = host.maybe_flip(image, np.random.default_rng(seed))
    mirrored = np.array_equal(out, image[:, ::-1])
    assert mirrored or np.array_equal(out, image)
    seen.add(mirrored)
  assert seen == {True, False}


def photo(size=(40, 30)):
  rng = np.random.default_rng(1)
  return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize('name', sorted(randaugment.OPS))
def test_each_randaugment_op_keeps_size_and_type(name):
  im = photo()
  for m in (0.0, 5.0, 10.0):
    out = randaugment.OPS[name](im, m, np.random.default_rng(0))
    a = np.asarray(out)
    assert a.shape == (30, 40, 3) and a.dtype == np.uint8
  if name in ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel',
              'ColorIncreasing', 'BrightnessIncreasing', 'ContrastIncreasing',
              'SharpnessIncreasing', 'SolarizeAdd'):
    # Magnitude 0 is the identity for the ops whose strength starts at nothing.
    np.testing.assert_array_equal(
        np.asarray(randaugment.OPS[name](im, 0.0, np.random.default_rng(0))), np.asarray(im))


def test_randaugment_strength_grows_and_extremes_are_defined():
  im = photo()
  black = np.asarray(randaugment.OPS['PosterizeIncreasing'](im, 10.0, None))
  assert not black.any()  # 0 bits kept
  inverted = np.asarray(randaugment.OPS['SolarizeIncreasing'](im, 10.0, None))
  np.testing.assert_array_equal(inverted, 255 - np.asarray(im))  # threshold 0: all inverted
  diffs = [np.abs(np.asarray(randaugment.OPS['BrightnessIncreasing'](
      im, m, np.random.default_rng(0)), float) - np.asarray(im, float)).mean() for m in (2, 6, 9)]
  assert diffs[0] < diffs[1] < diffs[2]


def test_randaugment_spec_and_determinism():
  assert randaugment.parse('rand-m9-mstd0.5-inc1') == {'magnitude': 9.0, 'magnitude_std': 0.5,
                                                       'num_ops': 2}
  assert randaugment.parse('rand-n3-m7')['num_ops'] == 3
  with pytest.raises(ValueError, match="start with 'rand-'"):
    randaugment.parse('auto-m9')
  with pytest.raises(ValueError, match="unsupported RandAugment part 'w0'"):
    randaugment.parse('rand-m9-w0')
  im = photo()
  outs = [np.asarray(randaugment.rand_augment(im, np.random.default_rng(s))) for s in (5, 5, 6)]
  np.testing.assert_array_equal(outs[0], outs[1])
  changed = [not np.array_equal(np.asarray(randaugment.rand_augment(
      im, np.random.default_rng(s))), np.asarray(im)) for s in range(20)]
  # Each of 2 ops applies with p 0.5: about 3 in 4 images change.
  assert 8 <= sum(changed) <= 20


def test_normalize_and_smoothing():
  x = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
  np.testing.assert_allclose(aug.normalize(x)[0, 0, 0],
                             (1 - np.array(aug.MEAN)) / np.array(aug.STD), rtol=1e-6)
  t = aug.smooth_one_hot(jnp.array([2, 0]), 4, 0.1)
  np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(t[0], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)


def test_random_erasing_boxes_inside_and_only_the_box_changes():
  key = jax.random.key(0)
  n, height, width = 2000, 24, 32
  boxes = jax.jit(aug.erase_boxes, static_argnums=(1, 2, 3, 4))
  erase, top, left, h, w = map(np.asarray, boxes(key, n, height, width, 0.25))
  assert 0.2 < erase.mean() < 0.3
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  area = h * w / (height * width)
  assert (area > 0.015).all() and (area < 1 / 3 + 0.03).all()
  x = jnp.zeros((8, 24, 32, 3)) + 5.0
  erasing = jax.jit(aug.random_erasing, static_argnums=2)
  y = np.asarray(erasing(jax.random.key(1), x, 1.0))
  changed = (y != 5.0).any(-1)
  erase, top, left, h, w = map(np.asarray, boxes(jax.random.split(jax.random.key(1))[0],
                                                 8, 24, 32, 1.0))
  inside = np.asarray(aug.box_mask(top, left, h, w, 24, 32))
  np.testing.assert_array_equal(changed, inside & erase[:, None, None])
  np.testing.assert_array_equal(y, np.asarray(erasing(jax.random.key(1), x, 1.0)))
  assert aug.random_erasing(key, x, prob=0.0) is x


def test_mixup_and_cutmix_targets_sum_to_one_and_match_the_pixels():
  b, classes = 6, 7
  x = jnp.arange(b, dtype=jnp.float32)[:, None, None, None] * jnp.ones((b, 16, 16, 3))
  labels = jnp.arange(b)
  smooth = np.eye(classes) * 0.9 + 0.1 / classes
  mix = jax.jit(lambda key: aug.mixup_cutmix(key, x, labels, classes, smoothing=0.1))
  seen = set()
  for seed in range(12):
    key = jax.random.key(seed)
    mixed, targets = mix(key)
    mixed, targets = np.asarray(mixed), np.asarray(targets)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-5)
    assert (targets >= 0).all()
    # Example 0 is mixed with example b-1: its pixels are 0 * lam + (b-1) * (1 - lam) on average,
    # for Mixup exactly and for CutMix through the pasted area (lam corrected to it).
    lam = 1 - mixed[0].mean() / (b - 1)
    np.testing.assert_allclose(targets[0], lam * smooth[0] + (1 - lam) * smooth[b - 1],
                               atol=1e-5)
    cutmix = np.isin(mixed[0], [0.0, b - 1]).all()
    seen.add(bool(cutmix))
    np.testing.assert_array_equal(mixed, np.asarray(mix(key)[0]))
  assert seen == {True, False}  # both modes happen
  same, t = aug.mixup_cutmix(jax.random.key(0), x, labels, classes, mixup_alpha=0.0,
                             cutmix_alpha=0.0, smoothing=0.0)
  assert same is x and np.array_equal(np.asarray(t), np.eye(classes)[np.asarray(labels)])


def test_cutmix_box_inside_and_lambda_is_the_kept_area():
  box = jax.jit(aug.cutmix_box, static_argnums=(2, 3))
  for seed in range(50):
    lam = jax.random.uniform(jax.random.key(seed))
    (top, left, h, w), kept = box(jax.random.key(seed + 100), lam, 20, 30)
    top, left, h, w = map(int, (top, left, h, w))
    assert 0 <= top and top + h <= 20 and 0 <= left and left + w <= 30
    np.testing.assert_allclose(float(kept), 1 - h * w / 600, rtol=1e-6)
