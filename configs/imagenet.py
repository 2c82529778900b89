"""ImageNet-1K classification with the DeiT recipe, as in the AFT paper (Sec. 5.3, Table 7).

Commands (the folder layout train/<wnid>/*.JPEG, val/<wnid>/*.JPEG at data.path):
  python train.py --config=configs/imagenet.py:mixer=aft_conv,size=small,kernel=15,heads=384 \
      --workdir=runs/in_aftconv --config.data.path=/data/imagenet
  python eval.py --config=configs/imagenet.py:mixer=aft_conv,size=small,kernel=15,heads=384 \
      --workdir=runs/in_aftconv --config.data.path=/data/imagenet --split=validation \
      [--config.data.eval_resolution=384]    # top-1/top-5 over all 50,000 validation images
Other readers: --config.data.format=tar (data.path: the folder with ILSVRC2012_img_train.tar,
ILSVRC2012_img_val.tar and data.val_labels), --config.data.format=tfds (data.path: a TFDS
data_dir with imagenet2012 in array_record, e.g. from `python -m data.imagenet.convert`).

Arguments after ':' (comma separated, strict): mixer=<registered mixer> (softmax: DeiT),
size=tiny (12 layers, d 192, 3 heads) or small (12, 384, 6), kernel=<AFT-conv window>
(11), heads=<AFT-conv heads> (0: the model's heads), quick (the offline digits run below).

Table 7 rows (paper top-1 at 224, trained 300 epochs at batch 1024 on 8 V100s):
  mixer=softmax,size=tiny                     DeiT tiny        72.2
  mixer=softmax,size=small                    DeiT small       79.9
  mixer=aft_full,size=tiny                    AFT-full tiny    72.4   (d' = 128)
  mixer=aft_full,size=small                   AFT-full small   79.8
  mixer=aft_conv,size=tiny,kernel=11,heads=32     AFT-conv tiny    73.9
  mixer=aft_conv,size=tiny,kernel=11,heads=192    AFT-conv tiny    74.8
  mixer=aft_conv,size=small,kernel=11,heads=16    AFT-conv small   80.2
  mixer=aft_conv,size=small,kernel=11,heads=384   AFT-conv small   80.8
  mixer=aft_conv,size=small,kernel=15,heads=384   AFT-conv small   81.0 (81.6 evaluated at 384)
Ours: no full run has been made (a run needs ~8 accelerators for days).

The recipe (DeiT's main.py defaults): AdamW lr 5e-4 x batch / 512, batch 1024, weight decay
0.05 (linear kernels only), no clipping, cosine after 5 warmup epochs, 300 epochs; drop path
0.1; label smoothing 0.1; random resized crop (0.08-1, bicubic) + flip + RandAugment
rand-m9-mstd0.5-inc1 + random erasing 0.25 (pixel mode); Mixup 0.8 / CutMix 1.0 switched
with p 0.5; repeated augmentation x3; eval resize 256 + centre crop 224 (crop 1.0 at any other
resolution). AFT-conv: no class token, no position embedding, global average pooling.

quick: scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes), upsampled to
32x32 and written once as JPEG files in the folder layout at data.path
(~/.cache/aft/digits_imagenet_layout); patch 4, 4 layers of d 64; a few minutes on 2 CPU cores.
"""
from ml_collections.config_dict import placeholder

from configs.common import LAYOUT, base_config, mixer_table, parse_arg

SIZES = {'tiny': (12, 192, 3), 'small': (12, 384, 6)}
TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
  a = parse_arg(arg, {'mixer': 'softmax', 'size': 'small', 'kernel': 11, 'heads': 0,
                      'quick': False})
  if a.size not in SIZES:
    raise ValueError(f'size must be one of {sorted(SIZES)}, got {a.size!r}')
  layers, dim, heads = SIZES[a.size]
  presets = {'aft_full': {'bias_dim': 128},
             'aft_conv': {'window': a.kernel, 'heads': a.heads or heads}}
  conv = a.mixer == 'aft_conv'  # fully convolutional: no class token, no positions, GAP
  c = base_config()
  c.task = 'imagenet'
  c.data = dict(
      name='imagenet2012', format='folder', path='~/data/imagenet', num_classes=1000,
      val_labels='', tfds_name='imagenet2012', image_size=224,
      eval_resolution=None, crop_pct=None,  # None: image_size; 0.875 there, 1.0 elsewhere
      crop_scale=(0.08, 1.0), hflip=0.5, randaugment='rand-m9-mstd0.5-inc1',
      random_erasing=0.25, mixup=0.8, cutmix=1.0, mix_switch_prob=0.5, label_smoothing=0.1,
      repeated_aug=3, workers=8, threads=8)
  c.data.eval_resolution, c.data.crop_pct = placeholder(int), placeholder(float)
  c.model = dict(mixer=a.mixer, patch=16, dim=dim, num_layers=layers, num_heads=heads,
                 mlp_dim=4 * dim, class_token=not conv, position=not conv,
                 pooling='mean' if conv else 'cls', drop_path_rate=0.1,
                 compute_dtype='bfloat16', **LAYOUT)
  c.model.mixer_options = mixer_table(presets)
  c.batch_size, c.num_epochs = 1024, 300
  steps_per_epoch = TRAIN_IMAGES // c.batch_size
  c.optim.update(lr=5e-4 * c.batch_size / 512, schedule='cosine',
                 warmup_steps=5 * steps_per_epoch, b1=0.9, b2=0.999, eps=1e-8,
                 weight_decay=0.05, grad_clip=0.0)
  c.log_every, c.checkpoint_every = 100, 2000
  # 20 validation batches every 5000 steps; all 50,000 images at the end.
  c.evals.valid = dict(type='accuracy', every=5000, split='validation', max_batches=20,
                       top_k=(1, 5))
  c.best_metric, c.best_mode = 'valid/top1', 'max'
  if a.quick:
    c.data.update(name='digits', format='digits', path='~/.cache/aft/digits_imagenet_layout',
                  num_classes=10, image_size=32, crop_scale=(0.35, 1.0), hflip=0.0,
                  mixup=0.0, cutmix=0.0, repeated_aug=1, workers=0, threads=2)
    c.model.update(patch=4, dim=64, num_layers=4, num_heads=4, mlp_dim=128,
                   drop_path_rate=0.0, compute_dtype='float32')
    c.model.mixer_options.aft_conv.heads = a.heads or c.model.num_heads
    c.batch_size, c.num_epochs, c.num_steps = 64, 1, 600
    c.optim.update(lr=2e-3, warmup_steps=30)
    c.log_every, c.checkpoint_every = 50, 200
    c.evals.valid.update(every=100, max_batches=None)
    c.eval_at_start = True
  return c

