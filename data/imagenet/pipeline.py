"""Grain pipelines over any ImageNet source (records {'jpeg': bytes, 'label': int, 'name': str}).

Training: repeated augmentation (each image `repeats` times in a row of a per-epoch
permutation, the epoch cut back to the dataset's size, as DeiT's RASampler), then per image
in the workers: random resized crop decoded at reduced size, flip, RandAugment. Images stay
uint8 (4x less to move); normalisation, random erasing and Mixup/CutMix run on device. Only
this host's rows of each global batch are read and decoded. A training image that cannot be
decoded is replaced by the next readable one and counted in the batch's 'skipped'. The
iterator's state (an index) goes into the checkpoint, so a resumed run sees the same batches.

Evaluation: resize the short side to size / crop_pct and centre-crop `size` (DeiT: 256 ->
224; crop_pct 1.0 at 384), every image of the split, the last batch padded with masked rows.
"""
from __future__ import annotations

import functools
import logging

import grain
import numpy as np
from PIL import Image

from data.augment import host, randaugment
from data.imagenet.decode import UnreadableImage, center_box, crop_resize, image_size
from data.lm import _local_rows
from data.workers import grain_worker_init

log = logging.getLogger(__name__)


def train_image(record, rng: np.random.Generator, size: int, scale, hflip: float,
                rand_aug: dict | None) -> np.ndarray:
  """uint8 [size, size, 3]: crop box from the header, reduced-size decode, flip, RandAugment."""
  box = host.random_resized_crop_box(rng, image_size(record['jpeg'], record['name']), scale)
  image = crop_resize(record['jpeg'], box, (size, size), record['name'])
  image = host.maybe_flip(image, rng, hflip)
  if rand_aug:
    image = np.asarray(randaugment.rand_augment(Image.fromarray(image), rng, **rand_aug))
  return image


def eval_image(record, size: int, crop_pct: float) -> np.ndarray:
  box = center_box(image_size(record['jpeg'], record['name']), crop_pct)
  return crop_resize(record['jpeg'], box, (size, size), record['name'])


class _RepeatedPositions:
  """Position p of the endless training stream -> record index: epoch e = p // n uses the
  permutation seeded by (seed, e), each image `repeats` times in a row."""

  def __init__(self, n: int, seed: int, repeats: int):
    self.n, self.seed, self.repeats = n, seed, repeats

  @functools.lru_cache(maxsize=2)
  def _perm(self, epoch: int):
    return np.random.default_rng((self.seed, epoch)).permutation(self.n)

  def __call__(self, p: int) -> int:
    epoch, j = divmod(int(p), self.n)
    return int(self._perm(epoch)[j // self.repeats])


class _TrainExample:
  def __init__(self, source, size, scale, hflip, rand_aug, max_tries=10):
    self.source, self.size, self.scale = source, size, tuple(scale)
    self.hflip, self.rand_aug, self.max_tries = hflip, rand_aug, max_tries

  def __call__(self, index: int, rng: np.random.Generator):
    for skipped in range(self.max_tries):
      record = self.source[(index + skipped) % len(self.source)]
      try:
        image = train_image(record, rng, self.size, self.scale, self.hflip, self.rand_aug)
        return {'image': image, 'label': np.int32(record['label']), 'skipped': np.int32(skipped)}
      except UnreadableImage as e:
        log.warning('skipped an unreadable training image: %s', e)
    raise UnreadableImage(f'{self.max_tries} training images in a row from index {index} are '
                          f'unreadable (last: {record["name"]}); check the data at config.data.path')


def train_dataset(source, global_batch: int, seed: int, *, size: int, scale=(0.08, 1.0),
                  hflip: float = 0.5, randaugment_spec: str = '', repeats: int = 1,
                  workers: int = 0, threads: int = 8):
  """Endless iterator of this host's {'image': uint8 [b, size, size, 3], 'label', 'skipped'}
  batches with get_state/set_state."""
  n = len(source)
  if n < global_batch:
    raise ValueError(f'{n} training images, fewer than one batch of {global_batch} '
                     f'(config.batch_size)')
  first, rows = _local_rows(global_batch)
  positions = _RepeatedPositions(n, seed, repeats)
  rand_aug = randaugment.parse(randaugment_spec) if randaugment_spec else None
  example = _TrainExample(source, size, scale, hflip, rand_aug)
  # Local position q -> global stream position of this host's row.
  to_global = lambda q: (q // rows) * global_batch + first + q % rows
  ds = (grain.MapDataset.range(n).repeat(None)  # endless; only the index is used
        .map_with_index(lambda q, _: positions(to_global(q)))
        .random_map(example, seed=seed)
        .batch(rows, drop_remainder=True))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * rows))
  if workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=grain_worker_init)
  return iter(it)


def eval_batches(source, global_batch: int, max_batches: int | None = None, *, size: int,
                 crop_pct: float, threads: int = 8):
  """This host's rows of every global batch of the split: {'image', 'label', 'mask'}; padded
  rows are zeros with mask 0, so the split is covered exactly once."""
  first, rows = _local_rows(global_batch)
  n = len(source)
  n_batches = -(-n // global_batch)
  if max_batches is not None:
    n_batches = min(n_batches, max_batches)
  idx = np.concatenate([np.arange(b * global_batch + first, b * global_batch + first + rows)
                        for b in range(n_batches)]) if n_batches else np.zeros(0, np.int64)

  def load(i):
    if i >= n:
      return {'image': np.zeros((size, size, 3), np.uint8), 'label': np.int32(0),
              'mask': np.float32(0)}
    record = source[int(i)]
    try:
      image = eval_image(record, size, crop_pct)
    except UnreadableImage as e:
      raise UnreadableImage(f'{e}; evaluation needs every image: replace or remove the file '
                            f'(or re-run the converter)') from None
    return {'image': image, 'label': np.int32(record['label']), 'mask': np.float32(1)}

  ds = grain.MapDataset.source(idx).map(load).batch(rows)
  yield from ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                  prefetch_buffer_size=2 * rows))
