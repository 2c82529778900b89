"""Enwik8 byte-level language modelling, as in the AFT paper (Sec. 5.2, Table 4).

Command (the real data; get http://mattmahoney.net/dc/enwik8.zip first):
  python train.py --config=configs/enwik8.py:mixer=softmax --workdir=runs/enwik8_softmax \
      --config.data.path=/path/to/enwik8.zip
Arguments after ':' (comma separated, strict): mixer=<any registered mixer>,
size=12x512 (12 layers, d 512, 8 heads, FF 2048; default) or 24x256 (24 layers,
d 256, 4 heads, FF 1024), quick (the quickstart: a small model on the built-in
stdlib text, about 3 minutes on 2 CPU cores).

Paper setup: T=1024, AdamW, warmup, lr 3e-3, weight decay 0.5, dropout 0.1,
batch 128, 100 epochs (the first 90M bytes; 686 steps per epoch), on 8x V100.
Paper test bits/char: Transformer 12L/512 1.137, 24L/256 1.130; AFT-local-32
12L/512 1.180, 24L/256 1.154; AFT-simple 24L/256 1.209.
Ours: the full run has not been made yet. The quick variant reaches the
validation bits/char written in the README.
"""
from configs.common import LAYOUT, base_config, mixer_table, parse_arg

SIZES = {'12x512': (12, 512, 8, 2048), '24x256': (24, 256, 4, 1024)}
# Paper settings per mixer (Sec. 5.2); other mixers take their defaults.
MIXER_OPTIONS = {'aft_local': {'window': 32, 'bias_dim': 256}, 'aft_full': {'bias_dim': 256}}


def get_config(arg=None):
  a = parse_arg(arg, {'mixer': 'softmax', 'size': '12x512', 'quick': False})
  if a.size not in SIZES:
    raise ValueError(f'size must be one of {sorted(SIZES)}, got {a.size!r}')
  layers, dim, heads, mlp = SIZES[a.size]
  c = base_config()
  c.task = 'text_lm'
  # data.name='text' trains on your own bytes: data.path (a file, folder or zip) split by
  # data.fractions, or one file/folder/zip per split in data.{train,valid,test}_path.
  c.data = dict(name='enwik8', path='~/data/enwik8.zip', expected_bytes=100_000_000,
                seq_len=1024, fractions=(0.9, 0.05, 0.05), train_path='', valid_path='',
                test_path='')
  c.model = dict(mixer=a.mixer, vocab_size=256, dim=dim, num_layers=layers,
                 num_heads=heads, mlp_dim=mlp, max_len=1024, dropout_rate=0.1,
                 position='learned', compute_dtype='float32', **LAYOUT)
  c.model.mixer_options = mixer_table(MIXER_OPTIONS)
  c.batch_size, c.num_epochs = 128, 100
  c.optim.lr, c.optim.weight_decay = 3e-3, 0.5
  c.checkpoint_every = 1000
  # bits/char on the first 40 validation batches every 2000 steps, the whole split at the end;
  # a continuation of the first 32 validation bytes at the end.
  c.evals.valid = dict(type='bits', every=2000, split='valid', max_batches=40)
  c.evals.sample = dict(type='samples', every=0, num=1, temperature=0.8, prompt_len=32,
                        num_tokens=200)
  if a.quick:
    c.data.name, c.data.seq_len = 'builtin', 128
    c.model.update(dim=128, num_layers=4, num_heads=4, mlp_dim=512, max_len=128,
                   dropout_rate=0.0)
    c.batch_size, c.num_steps = 16, 1000
    c.optim.update(lr=3e-3, schedule='cosine', warmup_steps=50, weight_decay=0.1)
    c.log_every, c.checkpoint_every = 50, 250
    c.evals.valid.update(every=500, max_batches=20)
    c.eval_at_start = True
  return c
