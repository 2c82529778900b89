"""Metrics to the console (a live progress line), TensorBoard and metrics.jsonl; process 0 only.

Evaluator values that are not numbers are stored too: text as <name>.txt, images
as a PNG grid <name>_step<N>.png (and both in TensorBoard).
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time

import jax
import numpy as np


class MetricWriter:

  def __init__(self, workdir: str, total_steps: int, unit: str = 'bits', purge_step: int = 0):
    """purge_step: a resumed run's first step; TensorBoard hides what earlier runs logged from
    that step on (metrics.jsonl is trimmed by trainlib.workdir)."""
    self.active = jax.process_index() == 0
    self.workdir, self.total, self.unit = workdir, total_steps, unit
    self._tb = None
    self._jsonl = None
    self._t0 = self._s0 = None  # speed is measured from the first logged step on
    self._paused = 0.0          # eval/checkpoint time, left out of steps/s and ETA
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # imported here: only process 0 writes
      self._tb = SummaryWriter(os.path.join(workdir, 'tb'), purge_step=purge_step or None)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write_config(self, config, **facts) -> None:
    """config.json (the resolved config) and run.json (command, device, versions, facts)."""
    if self.active:
      with open(os.path.join(self.workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
      with open(os.path.join(self.workdir, 'run.json'), 'w') as f:
        json.dump({**run_facts(), 'started': time.strftime('%Y-%m-%d %H:%M:%S'), **facts}, f,
                  indent=2)

  def pause(self, seconds: float) -> None:
    self._paused += seconds

  def write(self, step: int, values: dict, prefix: str = 'train') -> None:
    """Numbers to TensorBoard, metrics.jsonl and the console; text and images to files."""
    if not self.active:
      return
    scalars = {k: float(v) for k, v in values.items() if isinstance(v, (int, float, np.number))}
    rate = self._rate(step) if prefix == 'train' else None
    if rate:
      scalars['steps_per_s'] = rate
    for k, v in scalars.items():
      self._tb.add_scalar(f'{prefix}/{k}', v, step)
    if scalars:
      self._jsonl.write(json.dumps({'step': step, 'split': prefix, **scalars}) + '\n')
      self._jsonl.flush()
    for k, v in values.items():
      if isinstance(v, str):
        self._tb.add_text(f'{prefix}/{k}', v, step)
        path = os.path.join(self.workdir, f'{prefix}.txt')
        with open(path, 'w') as f:
          f.write(v)
        print(f'[{prefix}] step {step} ({path}):\n{v}', flush=True)
      elif isinstance(v, np.ndarray) and v.ndim == 4:
        print(f'[{prefix}] step {step}: {len(v)} images in '
              + write_image_grid(v, self.workdir, prefix, step, self._tb), flush=True)
    self._tb.flush()
    if prefix == 'train':
      self._progress(step, scalars, rate)
    elif scalars:
      print(f'[{prefix}] step {step}: ' + '  '.join(
          f'{self.unit if k == "bits" else k} {fmt(v)}' for k, v in scalars.items()), flush=True)

  def _rate(self, step: int) -> float | None:
    """Steps per second since the first logged step, compilation, evaluation and saving left out."""
    now = time.perf_counter()
    if self._t0 is None:
      self._t0, self._s0, self._paused = now, step, 0.0
      return None
    return (step - self._s0) / max(now - self._t0 - self._paused, 1e-9)

  def _progress(self, step: int, s: dict, rate: float | None) -> None:
    eta = (self.total - step) / rate if rate else None
    shown = '  '.join(f'{k} {v:.4f}' for k, v in sorted(s.items(), key=lambda kv: kv[0] != 'loss')
                      if k not in ('lr', 'grad_norm', 'steps_per_s'))
    line = (f'step {step}/{self.total}  {shown}  lr {s["lr"]:.2e}  '
            + (f'{rate:.2f} steps/s  ETA {_hms(eta)}' if rate else 'measuring speed...'))
    print(line, flush=True, file=sys.stdout)

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()


def run_facts() -> dict:
  """How and where this process runs, for the records of its results."""
  device = jax.devices()[0]
  return {'command': shlex.join(['python', *sys.argv]), 'device': device.device_kind,
          'platform': device.platform, 'device_count': jax.device_count(),
          'process_count': jax.process_count(), 'jax': jax.__version__}


def image_grid(images: np.ndarray, pad: int = 1) -> np.ndarray:
  """[N, H, W, 3] -> one [rows*(H+pad), cols*(W+pad), 3] grid, as square as possible."""
  n, h, w, c = images.shape
  cols = int(np.ceil(np.sqrt(n)))
  rows = -(-n // cols)
  grid = np.full((rows * (h + pad), cols * (w + pad), c), 255, np.uint8)
  for i, im in enumerate(images):
    r, q = divmod(i, cols)
    grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = im
  return grid


def write_image_grid(images: np.ndarray, workdir: str, name: str, step: int, tb=None) -> str:
  """Saves the grid as <workdir>/<name>_step<step>.png (and into TensorBoard, given a writer)."""
  from PIL import Image
  grid = image_grid(images)
  path = os.path.join(workdir, f'{name}_step{step}.png')
  Image.fromarray(grid).save(path)
  if tb is not None:
    tb.add_image(name, grid, step, dataformats='HWC')
  return path


def fmt(v: float) -> str:
  """A value for the console: counts as integers, the rest with 4 decimals."""
  return f'{v:.0f}' if v.is_integer() and abs(v) >= 10 else f'{v:.4f}'  # counts as integers


def _hms(seconds: float | None) -> str:
  if seconds is None:
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}:{m:02d}:{s:02d}'
