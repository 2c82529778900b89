"""The folder layout: <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (what
torchvision's ImageFolder and timm read). Classes are the sorted sub-folder names of train/;
every split must have exactly those folders."""
from __future__ import annotations

import os

SPLIT_DIRS = {'train': ('train',), 'validation': ('val', 'validation')}
EXTENSIONS = ('.jpeg', '.jpg', '.png')


def split_dir(root: str, split: str) -> str:
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f'ImageNet folder {root!r} (config.data.path) does not exist; set '
                            f'--config.data.path to the folder holding train/ and val/')
  for name in SPLIT_DIRS[split]:
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  raise FileNotFoundError(
      f'{root!r} (config.data.path) has no {" or ".join(SPLIT_DIRS[split])}/ folder for the '
      f'{split} split; expected {root}/{SPLIT_DIRS[split][0]}/<wnid>/*.JPEG')


class FolderSource:
  """Random access to (JPEG bytes, label, file name) of one split, files sorted per class."""

  def __init__(self, root: str, split: str, num_classes: int):
    top = split_dir(root, split)
    self.classes = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d)))
    if len(self.classes) != num_classes:
      raise ValueError(
          f'{top} has {len(self.classes)} class folders, expected {num_classes} '
          f'(config.data.num_classes); point config.data.path at the folder whose train/ and '
          f'val/ each hold one sub-folder per class, or set config.data.num_classes')
    if split != 'train':
      train = split_dir(root, 'train')
      expected = sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
      if self.classes != expected:
        raise ValueError(f'the class folders of {top} differ from those of {train}: '
                         f'{sorted(set(self.classes) ^ set(expected))[:5]} ...')
    self.files, self.labels = [], []
    for label, wnid in enumerate(self.classes):
      names = sorted(f for f in os.listdir(os.path.join(top, wnid))
                     if f.lower().endswith(EXTENSIONS))
      self.files += [os.path.join(top, wnid, f) for f in names]
      self.labels += [label] * len(names)
    if not self.files:
      raise FileNotFoundError(f'no image files ({", ".join(EXTENSIONS)}) under {top}/<class>/')

  def __len__(self):
    return len(self.files)

  def __getitem__(self, i):
    i = int(i)
    with open(self.files[i], 'rb') as f:
      return {'jpeg': f.read(), 'label': self.labels[i], 'name': self.files[i]}
