"""ViT / DeiT (Dosovitskiy et al. 2021; Touvron et al. 2021) over any registered mixer.

Patches of p x p pixels -> a linear embedding (the same as a p x p convolution with stride p)
-> [class token] + [learned position embedding] -> the shared bidirectional Encoder ->
pooling ('cls': the class token; 'mean': global average pooling) -> a linear head.

Any input resolution (a multiple of the patch) runs: the position embedding, learned for
`image_size`, is resized bicubically to the new grid, and mixers that know the 2-D grid
(AFT-conv's `spatial_shape`) are told it; the mixers are built for the largest length the
model will see (`max_image_size`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import mixers
from mixers.layers import linear, sharding_scope
from models.encoder import Encoder, pool


def patchify(images: jax.Array, patch: int) -> jax.Array:
  """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C] in raster order of the patches."""
  b, h, w, c = images.shape
  if h % patch or w % patch:
    raise ValueError(f'image size {h}x{w} is not a multiple of the patch size {patch}')
  x = images.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def resize_positions(table: jax.Array, grid: tuple[int, int], new_grid: tuple[int, int]):
  """[gh*gw, d] learned for `grid` -> [nh*nw, d], bicubic (as timm/DeiT do for fine-tuning
  or evaluation at another resolution)."""
  if tuple(grid) == tuple(new_grid):
    return table
  t = table.reshape(*grid, -1)
  return jax.image.resize(t, (*new_grid, t.shape[-1]), 'bicubic').reshape(-1, t.shape[-1])


class ViT(nnx.Module):
  def __init__(self, *, num_classes: int, image_size: int, patch: int, dim: int,
               num_layers: int, num_heads: int, mlp_dim: int, mixer: str,
               mixer_options: dict | None = None, class_token: bool = True,
               position: bool = True, pooling: str = 'cls', drop_path_rate: float = 0.0,
               max_image_size: int | None = None, channels: int = 3, scan_layers: bool = False,
               remat: str = 'none', rngs: nnx.Rngs):
    if pooling == 'cls' and not class_token:
      raise ValueError("pooling='cls' needs class_token=True (or use pooling='mean')")
    self.patch, self.pooling = patch, pooling
    self.grid = (image_size // patch, image_size // patch)
    largest = max(image_size, max_image_size or image_size) // patch
    options = dict(mixer_options or {})
    if 'spatial_shape' in mixers.option_defaults(mixer):
      if class_token:
        raise ValueError(f'{mixer} mixes over the 2-D patch grid, which a class token breaks; '
                         f"use class_token=False and pooling='mean'")
      options['spatial_shape'] = self.grid
    init = nnx.with_partitioning(nnx.initializers.truncated_normal(0.02), (None, 'embed'))
    with sharding_scope():
      self.embed = linear(patch * patch * channels, dim, (None, 'embed'), rngs=rngs)
      self.cls = nnx.Param(init(rngs.params(), (1, dim))) if class_token else None
      self.pos = (nnx.Param(init(rngs.params(), (self.grid[0] * self.grid[1], dim)))
                  if position else None)
      self.head = linear(dim, num_classes, ('embed', None), rngs=rngs,
                         kernel_init=nnx.initializers.truncated_normal(0.02))
    self.encoder = Encoder(dim=dim, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim,
                           max_len=largest * largest + int(class_token), mixer=mixer,
                           mixer_options=options, drop_path_rate=drop_path_rate,
                           scan_layers=scan_layers, remat=remat, rngs=rngs)

  def _set_grid(self, grid):
    for block in self.encoder.blocks.layer_modules():
      if getattr(block.mixer, 'spatial_shape', None) is not None:
        block.mixer.spatial_shape = grid  # a Python attribute: the grid this call runs at

  def __call__(self, images: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
    """images [B, H, W, C] float (normalised) -> logits [B, num_classes]."""
    x = self.embed(patchify(images.astype(self.embed.kernel.dtype), self.patch))
    grid = (images.shape[1] // self.patch, images.shape[2] // self.patch)
    if self.pos is not None:
      x = x + resize_positions(self.pos[...], self.grid, grid).astype(x.dtype)
    if self.cls is not None:
      x = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(x.dtype)[None],
                                            (x.shape[0], 1, x.shape[2])), x], axis=1)
    self._set_grid(grid)
    return self.head(pool(self.encoder(x, rng=rng), self.pooling))
