"""RandAugment as timm's 'rand-m{M}-mstd{S}-inc1' (the DeiT recipe: rand-m9-mstd0.5-inc1).

Each image gets `num_ops` ops drawn uniformly with replacement from the 15 below, each
applied with probability 0.5 at a magnitude drawn per op from N(M, S) clipped to [0, 10]
(of 10). 'inc1' means the variants whose strength grows with the magnitude (posterize keeps
fewer bits, solarize a lower threshold; colour/contrast/brightness/sharpness move away from
1 in a random direction). Geometric ops fill with the ImageNet mean colour.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (124, 116, 104)  # round(255 * ImageNet mean)
_RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def _signed(x: float, rng) -> float:
  return -x if rng.random() < 0.5 else x


def _affine(im, matrix, rng):
  return im.transform(im.size, Image.Transform.AFFINE, matrix,
                      resample=_RESAMPLE[int(rng.integers(2))], fillcolor=FILL)


def _enhance(cls):
  return lambda im, m, rng: cls(im).enhance(1.0 + _signed(m / MAX_LEVEL * 0.9, rng))


def _posterize(im, bits: int):
  # As PIL's posterize, also for bits = 0 (all black), which PIL >= 12 refuses.
  mask = ~(2 ** (8 - bits) - 1) & 0xFF
  return Image.fromarray(np.asarray(im) & np.uint8(mask))


def _solarize_add(im, m, rng):
  add = int(m / MAX_LEVEL * 110)
  a = np.asarray(im, np.int16)
  return Image.fromarray(np.where(a < 128, np.minimum(a + add, 255), a).astype(np.uint8))


OPS = {
    'AutoContrast': lambda im, m, rng: ImageOps.autocontrast(im),
    'Equalize': lambda im, m, rng: ImageOps.equalize(im),
    'Invert': lambda im, m, rng: ImageOps.invert(im),
    'Rotate': lambda im, m, rng: im.rotate(
        _signed(m / MAX_LEVEL * 30.0, rng), resample=_RESAMPLE[int(rng.integers(2))],
        fillcolor=FILL),
    'PosterizeIncreasing': lambda im, m, rng: _posterize(im, 4 - int(m / MAX_LEVEL * 4)),
    'SolarizeIncreasing': lambda im, m, rng: ImageOps.solarize(
        im, 256 - int(m / MAX_LEVEL * 256)),
    'SolarizeAdd': _solarize_add,
    'ColorIncreasing': _enhance(ImageEnhance.Color),
    'ContrastIncreasing': _enhance(ImageEnhance.Contrast),
    'BrightnessIncreasing': _enhance(ImageEnhance.Brightness),
    'SharpnessIncreasing': _enhance(ImageEnhance.Sharpness),
    'ShearX': lambda im, m, rng: _affine(
        im, (1, _signed(m / MAX_LEVEL * 0.3, rng), 0, 0, 1, 0), rng),
    'ShearY': lambda im, m, rng: _affine(
        im, (1, 0, 0, _signed(m / MAX_LEVEL * 0.3, rng), 1, 0), rng),
    'TranslateXRel': lambda im, m, rng: _affine(
        im, (1, 0, _signed(m / MAX_LEVEL * 0.45, rng) * im.size[0], 0, 1, 0), rng),
    'TranslateYRel': lambda im, m, rng: _affine(
        im, (1, 0, 0, 0, 1, _signed(m / MAX_LEVEL * 0.45, rng) * im.size[1]), rng),
}


def parse(spec: str) -> dict:
  """'rand-m9-mstd0.5-inc1' -> {'magnitude': 9.0, 'magnitude_std': 0.5, 'num_ops': 2}."""
  parts = spec.split('-')
  if parts[0] != 'rand':
    raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r} "
                     f"(config.data.randaugment; '' turns it off)")
  out = {'magnitude': 10.0, 'magnitude_std': 0.0, 'num_ops': 2}
  for p in parts[1:]:
    for key, name in (('mstd', 'magnitude_std'), ('m', 'magnitude'), ('n', 'num_ops')):
      if p.startswith(key):
        out[name] = type(out[name])(float(p[len(key):]))
        break
    else:
      if p != 'inc1':  # only the increasing variants are implemented
        raise ValueError(f'unsupported RandAugment part {p!r} in {spec!r}; known: m, mstd, n, '
                         f'inc1')
  return out


def rand_augment(im: Image.Image, rng: np.random.Generator, magnitude: float = 9.0,
                 magnitude_std: float = 0.5, num_ops: int = 2, prob: float = 0.5) -> Image.Image:
  names = list(OPS)
  for i in rng.integers(0, len(names), num_ops):
    if rng.random() > prob:
      continue
    m = magnitude if magnitude_std <= 0 else rng.normal(magnitude, magnitude_std)
    im = OPS[names[i]](im, float(np.clip(m, 0.0, MAX_LEVEL)), rng)
  return im
