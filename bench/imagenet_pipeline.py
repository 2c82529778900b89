"""Input pipeline speed: training images/s on one core (decode + random resized crop + flip +
RandAugment rand-m9-mstd0.5-inc1, and the evaluation transform), ours against torchvision/timm
transforms on the same JPEG files.

  python -m bench.imagenet_pipeline [--images=200] [--out=bench/results/imagenet]

The files are real photos of ImageNet's typical size (500 x 375, JPEG quality 90): crops of
the two photos scikit-learn ships, rescaled, each different. Ours is data.imagenet.pipeline's
train_image (PIL, reduced-size JPEG decoding); random erasing and normalisation run on the
accelerator in ours (data/augment/batch.py) and are timed separately on the CPU here. The
peer is timm's create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1',
re_prob=0.25, re_mode='pixel', interpolation='bicubic') after ImageFolder's loader
(PIL open + convert('RGB')), run in .venv-bench (torch, torchvision, timm) with one thread.
Each side runs in its own single-threaded process; the ratio is per core.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZE = (500, 375)


def write_photos(folder: str, n: int) -> list[str]:
  from PIL import Image
  from sklearn.datasets import load_sample_images
  photos = [Image.fromarray(a) for a in load_sample_images().images]
  rng = np.random.default_rng(0)
  paths = []
  for i in range(n):
    photo = photos[i % len(photos)]
    w, h = photo.size
    cw = int(rng.integers(w // 2, w))
    ch = int(cw * SIZE[1] / SIZE[0])
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, max(1, h - ch + 1)))
    im = photo.crop((left, top, left + cw, top + min(ch, h))).resize(SIZE, Image.BICUBIC)
    path = os.path.join(folder, f'photo_{i:04d}.JPEG')
    im.save(path, quality=90)
    paths.append(path)
  return paths


def time_per_image(fn, items, repeats: int = 3) -> float:
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    for x in items:
      fn(x)
    best = min(best, (time.perf_counter() - t) / len(items))
  return best


def ours(paths) -> dict:
  from data.augment import batch as batch_aug
  from data.augment import randaugment
  from data.imagenet import pipeline
  datas = []
  for p in paths:
    with open(p, 'rb') as f:
      datas.append({'jpeg': f.read(), 'name': p})
  spec = randaugment.parse('rand-m9-mstd0.5-inc1')
  rng = np.random.default_rng(0)
  train = lambda r: pipeline.train_image(r, rng, 224, (0.08, 1.0), 0.5, spec)
  crop_only = lambda r: pipeline.train_image(r, rng, 224, (0.08, 1.0), 0.5, None)
  evaluate = lambda r: pipeline.eval_image(r, 224, 0.875)
  import jax
  jax.config.update('jax_platforms', 'cpu')
  images = np.stack([train(r) for r in datas[:64]])
  device = jax.jit(lambda k, x: batch_aug.random_erasing(k, batch_aug.normalize(x), 0.25))
  device(jax.random.key(0), images).block_until_ready()
  t = time.perf_counter()
  for i in range(5):
    device(jax.random.key(i), images).block_until_ready()
  return {'train_s': time_per_image(train, datas), 'crop_flip_s': time_per_image(crop_only, datas),
          'eval_s': time_per_image(evaluate, datas),
          'normalise_erase_s': (time.perf_counter() - t) / 5 / len(images)}


def peer(paths) -> dict:
  import torch
  from PIL import Image
  # PyPI's torchvision is built for CUDA torch: its C ops (detection only) do not load with
  # torch+cpu, and its import then fails registering fakes for nms and qnms; defining their
  # schemas first lets the pure-Python transforms (all the peer uses) import.
  lib = torch.library.Library('torchvision', 'DEF')  # noqa: F841 -- kept alive below
  for op in ('nms', 'qnms'):
    lib.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
  from timm.data import create_transform
  torch.set_num_threads(1)
  train_tf = create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1',
                              re_prob=0.25, re_mode='pixel', re_count=1,
                              interpolation='bicubic')
  crop_tf = create_transform(224, is_training=True, auto_augment=None, re_prob=0.0,
                             color_jitter=None, interpolation='bicubic')
  eval_tf = create_transform(224, is_training=False, interpolation='bicubic', crop_pct=0.875)
  load = lambda p: Image.open(p).convert('RGB')
  return {'train_s': time_per_image(lambda p: train_tf(load(p)), paths),
          'crop_flip_s': time_per_image(lambda p: crop_tf(load(p)), paths),
          'eval_s': time_per_image(lambda p: eval_tf(load(p)), paths),
          'versions': {'torch': torch.__version__, 'timm': __import__('timm').__version__}}


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument('--images', type=int, default=200)
  p.add_argument('--out', default='bench/results/imagenet')
  p.add_argument('--peer_python', default='.venv-bench/bin/python')
  p.add_argument('--side', choices=('ours', 'peer'), default=None, help=argparse.SUPPRESS)
  p.add_argument('--files', default='', help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.side:  # a worker: one side, one core
    paths = sorted(os.path.join(a.files, f) for f in os.listdir(a.files))
    print(json.dumps((ours if a.side == 'ours' else peer)(paths)))
    return 0
  with tempfile.TemporaryDirectory() as folder:
    paths = write_photos(folder, a.images)
    mean_kb = np.mean([os.path.getsize(q) for q in paths]) / 1024
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'XLA_FLAGS': '--xla_cpu_multi_thread_eigen=false '
           'intra_op_parallelism_threads=1'}
    results = {}
    for side, python in (('ours', sys.executable), ('peer', a.peer_python)):
      if not os.path.exists(python):
        print(f'{side}: {python} not found; create .venv-bench (bench/requirements-peers.txt)')
        continue
      cmd = ['taskset', '-c', '0', python, '-m', 'bench.imagenet_pipeline', f'--side={side}',
             f'--files={folder}']
      out = subprocess.run(cmd, env=env, capture_output=True, text=True)
      if out.returncode:
        print(out.stderr[-2000:])
        continue
      results[side] = json.loads(out.stdout.strip().splitlines()[-1])
  from bench import system
  rows = ['| transform | ours (images/s/core) | timm/torchvision (images/s/core) | ratio |',
          '|---|---|---|---|']
  for key, name in (('train_s', 'train: decode + crop + flip + RandAugment (+ erasing in timm)'),
                    ('crop_flip_s', 'train without RandAugment: decode + crop + flip'),
                    ('eval_s', 'eval: decode + resize 256 + centre crop 224')):
    o = results.get('ours', {}).get(key)
    q = results.get('peer', {}).get(key)
    rows.append(f'| {name} | {1 / o:.0f} | ' + (f'{1 / q:.0f} | {q / o:.2f}x |' if q else '- | - |')
                if o else f'| {name} | - | - | - |')
  if 'ours' in results:
    rows.append(f'\nOurs on device (here the CPU, jitted, batch 64): normalise + random erasing '
                f'{results["ours"]["normalise_erase_s"] * 1e6:.0f} us/image.')
  text = (f'Command: `python -m bench.imagenet_pipeline --images={a.images}`\n\n'
          f'Machine: {system.cpu_model()}, {system.cpu_cores()} cores (each side pinned to one '
          f'core with taskset; the machine was shared with other jobs, so absolute numbers are '
          f'low and noisy, the ratio less so). {a.images} JPEGs of 500x375, mean {mean_kb:.0f} '
          f'KiB. Best of 3 passes.\n\n' + '\n'.join(rows) + '\n')
  print(text)
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, 'pipeline_cpu.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(a.out, 'pipeline_cpu.json'), 'w') as f:
    json.dump({'images': a.images, 'mean_kib': mean_kb, 'results': results}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
