"""Per-batch augmentations on device (pure jax, inside the jitted step, from the step's key).

Order as in DeiT/timm: normalise, random erasing per image, then Mixup or CutMix over the
batch with label-smoothed targets. Images are [B, H, W, C]. Mixing pairs example i with
B-1-i (timm's batch mode), so it needs the whole global batch, which jit provides.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, 3] -> float32, ImageNet mean/std per channel."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(MEAN)) / jnp.asarray(STD)


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def erase_boxes(key, batch: int, height: int, width: int, prob: float = 0.25,
                area=(0.02, 1 / 3), log_ratio=(-1.2039728, 1.2039728), attempts: int = 10):
  """Per image (erase?, top, left, h, w): timm's RandomErasing box (area fraction uniform in
  `area`, log aspect uniform in log_ratio = log(0.3)..log(1/0.3)); the first of `attempts`
  draws that fits inside the image, none if none fits."""
  k_do, k_area, k_ratio, k_top, k_left = jax.random.split(key, 5)
  shape = (batch, attempts)
  target = jax.random.uniform(k_area, shape, minval=area[0], maxval=area[1]) * height * width
  aspect = jnp.exp(jax.random.uniform(k_ratio, shape, minval=log_ratio[0], maxval=log_ratio[1]))
  h = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
  fits = (h < height) & (w < width)
  first = jnp.argmax(fits, axis=1)
  pick = lambda a: jnp.take_along_axis(a, first[:, None], 1)[:, 0]
  h, w = pick(h), pick(w)
  top = jnp.floor(jax.random.uniform(k_top, (batch,)) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, (batch,)) * (width - w + 1)).astype(jnp.int32)
  erase = (jax.random.uniform(k_do, (batch,)) < prob) & jnp.any(fits, axis=1)
  return erase, top, left, h, w


def box_mask(top, left, h, w, height: int, width: int) -> jax.Array:
  """[B, H, W] True inside each example's box."""
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  return ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None]) &
          (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))


def random_erasing(key, x: jax.Array, prob: float = 0.25) -> jax.Array:
  """timm's RandomErasing(mode='pixel', count 1) on normalised images: one box per erased image
  filled with N(0, 1) noise per pixel and channel."""
  if prob <= 0:
    return x
  k_box, k_noise = jax.random.split(key)
  b, height, width, _ = x.shape
  erase, top, left, h, w = erase_boxes(k_box, b, height, width, prob)
  inside = box_mask(top, left, h, w, height, width) & erase[:, None, None]
  return jnp.where(inside[..., None], jax.random.normal(k_noise, x.shape, x.dtype), x)


def cutmix_box(key, lam, height: int, width: int):
  """timm's rand_bbox: a box of sides sqrt(1 - lam) x (H, W) centred uniformly, clipped to the
  image; returns (top, left, h, w) and lam corrected to the kept area."""
  cut = jnp.sqrt(1.0 - lam)
  ch, cw = (cut * height).astype(jnp.int32), (cut * width).astype(jnp.int32)
  k_y, k_x = jax.random.split(key)
  cy = jax.random.randint(k_y, (), 0, height)
  cx = jax.random.randint(k_x, (), 0, width)
  y0, y1 = jnp.clip(cy - ch // 2, 0, height), jnp.clip(cy + ch // 2, 0, height)
  x0, x1 = jnp.clip(cx - cw // 2, 0, width), jnp.clip(cx + cw // 2, 0, width)
  lam = 1.0 - ((y1 - y0) * (x1 - x0)) / (height * width)
  return (y0, x0, y1 - y0, x1 - x0), lam


def mixup_cutmix(key, x: jax.Array, labels: jax.Array, num_classes: int, *,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 smoothing: float = 0.1):
  """timm's Mixup (mode 'batch', prob 1): CutMix with probability switch_prob when both are on;
  lam ~ Beta(alpha, alpha). Returns (mixed images, soft targets [B, classes] summing to 1)."""
  targets = smooth_one_hot(labels, num_classes, smoothing)
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return x, targets
  k_switch, k_mix, k_cut, k_box = jax.random.split(key, 4)
  b, height, width, _ = x.shape
  lam_mix = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
  lam_cut = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else 1.0
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cut = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cut = jnp.asarray(cutmix_alpha > 0)
  (top, left, h, w), lam_box = cutmix_box(k_box, lam_cut, height, width)
  flipped = x[::-1]
  inside = box_mask(top[None], left[None], h[None], w[None], height, width)[0]
  cut_x = jnp.where(inside[None, ..., None], flipped, x)
  mix_x = lam_mix * x + (1.0 - lam_mix) * flipped
  lam = jnp.where(use_cut, lam_box, lam_mix).astype(x.dtype)
  mixed = jnp.where(use_cut, cut_x, mix_x)
  return mixed, lam * targets + (1.0 - lam) * targets[::-1]
