"""CIFAR-10 autoregressive image modelling in bits/dim, as in the AFT paper (Sec. 5.1, Table 2).

Command (the real data: the official python archive, read without extraction):
  python train.py --config=configs/cifar10.py:mixer=aft_local --workdir=runs/cifar_aft \
      --config.data.path=/path/to/cifar-10-python.tar.gz
  python eval.py --config=configs/cifar10.py:mixer=aft_local --workdir=runs/cifar_aft \
      --config.data.path=... --split=test          # test bits/dim, a row in results.jsonl
  python eval.py ... --sample=16                   # a PNG grid of 16 samples (and TensorBoard)
A TFDS cifar10 prepared in array_record: --config.data.format=tfds --config.data.tfds_data_dir=DIR.

Arguments after ':' (comma separated, strict): mixer=<registered mixer>,
size=24x256 (24 layers, d 256; default) or 12x512, quick (16x16 crops of the
photos scikit-learn ships, a small model, a few minutes on 2 CPU cores).

Paper setup: 3072 tokens (raster order, R, G, B consecutive), 256-way softmax,
shared embeddings/head, learned positions, pre-LN blocks with 4x MLP, dropout
0.1, AdamW lr 3e-3 with warmup, weight decay 0.1 on linear weights, batch 128,
200 epochs, random flip + one offset in [-10, 10]; AFT-local window 256 with a
factorised position bias of dim 64 (U, V ~ N(0, 1e-2)). Hardware: 8x V100.
Paper test bits/dim: Transformer 12L/512 2.88, 24L/256 2.86; AFT-local-256
12L/512 2.80, 24L/256 2.74; AFT-simple 24L/256 2.89.
Ours: the full run has not been made yet.
"""
from configs.common import LAYOUT, base_config, mixer_table, parse_arg

# size -> (layers, dim, softmax heads as in the paper's Transformer rows)
SIZES = {'24x256': (24, 256, 2), '12x512': (12, 512, 4)}
# Paper settings per mixer (Sec. 5.1); other mixers take their defaults.
MIXER_OPTIONS = {'aft_local': {'window': 256, 'bias_dim': 64}, 'aft_full': {'bias_dim': 64}}


def get_config(arg=None):
  a = parse_arg(arg, {'mixer': 'softmax', 'size': '24x256', 'quick': False})
  if a.size not in SIZES:
    raise ValueError(f'size must be one of {sorted(SIZES)}, got {a.size!r}')
  layers, dim, heads = SIZES[a.size]
  c = base_config()
  c.task = 'image_lm'
  c.data = dict(name='cifar10', format='archive', path='~/data/cifar-10-python.tar.gz',
                tfds_data_dir='', image_shape=(32, 32, 3), max_offset=10,
                num_train=0, num_valid=0)
  c.model = dict(mixer=a.mixer, vocab_size=256, dim=dim, num_layers=layers, num_heads=heads,
                 mlp_dim=4 * dim, max_len=3072, dropout_rate=0.1, position='learned',
                 compute_dtype='float32', **LAYOUT)
  c.model.mixer_options = mixer_table(MIXER_OPTIONS)
  c.batch_size, c.num_epochs = 128, 200
  c.optim.lr, c.optim.weight_decay = 3e-3, 0.1
  c.checkpoint_every = 1000
  # bits/dim on 10 test batches every 2000 steps, all 10,000 test images at the end.
  c.evals.valid = dict(type='bits', every=2000, split='valid', max_batches=10)
  if a.quick:
    c.data.update(name='builtin_images', image_shape=(16, 16, 3), num_train=100_000,
                  num_valid=256)
    c.model.update(dim=128, num_layers=2, num_heads=4, mlp_dim=512, max_len=768,
                   dropout_rate=0.0)
    c.batch_size, c.num_steps = 8, 200
    c.optim.update(schedule='cosine', warmup_steps=20)
    c.log_every, c.checkpoint_every = 10, 100
    c.evals.valid.update(every=100, max_batches=None)
    c.evals.samples = dict(type='samples', every=0, num=4)
    c.eval_at_start = True
  return c
