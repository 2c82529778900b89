"""JPEG bytes -> uint8 [H, W, 3] RGB crops with PIL, decoding at reduced size when the crop allows.

ImageNet holds a few odd files (22 CMYK JPEGs, one PNG named .JPEG, greyscale images); PIL
reads them all by content, and every result is converted to RGB. `Image.draft` lets
libjpeg-turbo decode at 1/2, 1/4 or 1/8 scale: the region we keep is still at least the
output size after the reduction, so quality is unchanged and the decode is much cheaper.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

BICUBIC = Image.Resampling.BICUBIC


class UnreadableImage(ValueError):
  pass


def open_image(data: bytes, name: str = '<bytes>') -> Image.Image:
  try:
    im = Image.open(io.BytesIO(data))
    im.size  # noqa: B018 -- the header is read here
  except Exception as e:  # PIL raises several types for bad files
    raise UnreadableImage(f'{name}: not a readable image ({type(e).__name__}: {e})') from e
  return im


def _draft(im: Image.Image, box, out_size) -> tuple[Image.Image, tuple]:
  """Decodes at the largest JPEG reduction that keeps `box` at least out_size; the box
  scaled to the decoded image."""
  w0, h0 = im.size
  if im.format == 'JPEG':
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = max(1.0, min(bw / out_size[0], bh / out_size[1]))
    im.draft('RGB', (max(1, int(w0 / scale)), max(1, int(h0 / scale))))
  sx, sy = im.size[0] / w0, im.size[1] / h0
  return im, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def crop_resize(data: bytes, box, out_size: tuple[int, int], name: str = '<bytes>',
                resample=BICUBIC) -> np.ndarray:
  """The region box=(left, top, right, bottom) of the original image, resized to out_size
  (width, height): uint8 [height, width, 3]."""
  im = open_image(data, name)
  try:
    im, box = _draft(im, box, out_size)
    im = im.convert('RGB')
    return np.asarray(im.resize(out_size, resample, box=box))
  except Exception as e:  # truncated or corrupt data surfaces only when decoding
    raise UnreadableImage(f'{name}: cannot be decoded ({type(e).__name__}: {e})') from e


def image_size(data: bytes, name: str = '<bytes>') -> tuple[int, int]:
  """(width, height) from the header alone."""
  return open_image(data, name).size


def center_box(size: tuple[int, int], crop_pct: float) -> tuple[float, float, float, float]:
  """The centred square a 'resize the short side to out/crop_pct, crop out' evaluation keeps,
  in original pixels (the DeiT eval transform: 256 -> 224 is crop_pct 0.875)."""
  w, h = size
  side = min(w, h) * crop_pct
  left, top = (w - side) / 2, (h - side) / 2
  return left, top, left + side, top + side
