"""The offline quick dataset: scikit-learn's bundled handwritten digits (UCI optdigits test set,
1797 8x8 greyscale images, 10 classes) upsampled to 32x32 and written once as RGB JPEG files in
the ImageNet folder layout, so a quick run goes through the real reader, decoder and
augmentations. Every 5th image (by index) is validation: 1437 train, 360 validation."""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from PIL import Image

SIZE = 32


def write_digits(root: str) -> str:
  """Writes <root>/train/digit<k>/*.JPEG and <root>/val/digit<k>/*.JPEG unless already there."""
  root = os.path.expanduser(root)
  if os.path.isfile(os.path.join(root, 'COMPLETE')):
    return root
  from sklearn.datasets import load_digits
  digits = load_digits()
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix='.digits-')  # renamed into place when complete
  for i, (image, label) in enumerate(zip(digits.images, digits.target)):
    split = 'val' if i % 5 == 0 else 'train'
    folder = os.path.join(tmp, split, f'digit{label}')
    os.makedirs(folder, exist_ok=True)
    pixels = np.round(image * (255 / 16)).astype(np.uint8)
    im = Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BICUBIC).convert('RGB')
    im.save(os.path.join(folder, f'digits_{i:05d}.JPEG'), quality=95)
  open(os.path.join(tmp, 'COMPLETE'), 'w').close()
  if os.path.isdir(root):
    shutil.rmtree(root)  # an earlier, incomplete write
  os.rename(tmp, root)
  return root
