"""ImageNet-1K classification with the DeiT recipe (the AFT paper's Sec. 5.3), top-1/top-5.

config.data.format picks the reader: 'folder' (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG),
'tar' (the official ILSVRC2012 tars), 'tfds' (a TFDS imagenet2012 prepared in array_record,
or our converter's output) or 'digits' (the offline quick dataset, written once into the
folder layout at data.path). Splits: 'train' and 'validation' ('valid' and 'val' are the
same; ImageNet's test labels are not public).

Decoding and per-image augmentation run in grain workers; normalisation, random erasing and
Mixup/CutMix with label smoothing run here, inside the jitted step, from the step's key.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data.augment import batch as batch_aug
from data.imagenet import pipeline
from data.imagenet.sources import open_split
from models.blocks import stack_options
from models.vit import ViT
from tasks.base import Task as BaseTask, resolve_mixer_options


class Task(BaseTask):
  unit = 'accuracy'

  @property
  def eval_resolution(self) -> int:
    return self.config.data.eval_resolution or self.config.data.image_size

  @property
  def crop_pct(self) -> float:
    d = self.config.data
    if d.crop_pct is not None:
      return d.crop_pct
    return 0.875 if self.eval_resolution == d.image_size else 1.0  # DeiT: 256->224; 1.0 at 384

  def build_model(self, rngs):
    m, d = self.config.model, self.config.data
    vit = lambda size, rngs: ViT(
        num_classes=d.num_classes, image_size=d.image_size, patch=m.patch, dim=m.dim,
        num_layers=m.num_layers, num_heads=m.num_heads, mlp_dim=m.mlp_dim, mixer=m.mixer,
        mixer_options=resolve_mixer_options(m), class_token=m.class_token,
        position=m.position, pooling=m.pooling, drop_path_rate=m.drop_path_rate,
        max_image_size=size, rngs=rngs, **stack_options(m))
    if self.eval_resolution != d.image_size:
      # Mixers with parameters per position (AFT-full's pair bias, Linformer's projections)
      # would need other shapes at another length: say so rather than fail on restore.
      shapes = [jax.tree.map(lambda x: x.shape, nnx.state(nnx.eval_shape(
          lambda size=size: vit(size, nnx.Rngs(0))), nnx.Param))
                for size in (d.image_size, self.eval_resolution)]
      if shapes[0] != shapes[1]:
        raise ValueError(
            f'{m.mixer} has parameters per position, learned for {d.image_size}x'
            f'{d.image_size} images, so it cannot run at config.data.eval_resolution='
            f'{self.eval_resolution}; evaluate at {d.image_size} (the paper evaluates only '
            f'AFT-conv at 384)')
    return vit(self.eval_resolution, rngs)

  @functools.cache
  def split(self, name: str):
    return open_split(self.config.data, name)

  def train_iterator(self):
    c, d = self.config, self.config.data
    return pipeline.train_dataset(
        self.split('train'), c.batch_size, c.seed, size=d.image_size, scale=d.crop_scale,
        hflip=d.hflip, randaugment_spec=d.randaugment, repeats=d.repeated_aug,
        workers=d.workers, threads=d.threads)

  def steps_per_epoch(self) -> int:
    return max(1, len(self.split('train')) // self.config.batch_size)

  def eval_batches(self, split, max_batches=None):
    return pipeline.eval_batches(self.split(split), self.config.batch_size, max_batches,
                                 size=self.eval_resolution, crop_pct=self.crop_pct,
                                 threads=self.config.data.threads)

  def example_batch(self, batch_size, rng):
    d = self.config.data
    return {'image': rng.integers(0, 256, (batch_size, d.image_size, d.image_size, 3),
                                  dtype=np.uint8),
            'label': rng.integers(0, d.num_classes, batch_size, dtype=np.int32)}

  def logits(self, model, batch):
    return model(batch_aug.normalize(batch['image']))

  def loss(self, model, batch, rng):
    d = self.config.data
    x = batch_aug.normalize(batch['image'])
    if rng is None:
      targets = batch_aug.smooth_one_hot(batch['label'], d.num_classes, d.label_smoothing)
      model_key = None
    else:
      erase_key, mix_key, model_key = jax.random.split(rng, 3)
      x = batch_aug.random_erasing(erase_key, x, d.random_erasing)
      x, targets = batch_aug.mixup_cutmix(
          mix_key, x, batch['label'], d.num_classes, mixup_alpha=d.mixup, cutmix_alpha=d.cutmix,
          switch_prob=d.mix_switch_prob, smoothing=d.label_smoothing)
    logits = model(x, rng=model_key).astype(jnp.float32)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    metrics = {'accuracy': jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1))}
    if 'skipped' in batch:
      metrics['skipped_images'] = jnp.sum(batch['skipped'])
    return loss, metrics
