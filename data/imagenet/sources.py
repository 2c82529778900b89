"""The ImageNet reader named by config.data.format, for one split."""
from __future__ import annotations

SPLITS = {'train': 'train', 'validation': 'validation', 'valid': 'validation',
          'val': 'validation'}


def open_split(data, split: str):
  """The random-access source of one split for config.data."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; ImageNet has {sorted(set(SPLITS.values()))} '
                     f'(its test labels are not public)')
  split = SPLITS[split]
  if data.format == 'digits':
    from data.imagenet.quick import write_digits
    write_digits(data.path)
  if data.format in ('folder', 'digits'):
    from data.imagenet.folder import FolderSource
    return FolderSource(data.path, split, data.num_classes)
  if data.format == 'tar':
    from data.imagenet.tars import TarSource
    return TarSource(data.path, split, data.num_classes, data.val_labels)
  if data.format == 'tfds':
    from data.imagenet.tfds_source import TfdsSource
    return TfdsSource(data.tfds_name, split, data.path)
  raise ValueError(f"config.data.format must be 'folder', 'tar', 'tfds' or 'digits', got "
                   f'{data.format!r}')
