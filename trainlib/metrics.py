"""Metrics to the console (a live progress line), TensorBoard and metrics.jsonl; process 0 only.

Train rows carry the speed: steps/s, the task's units/s (tokens/s, images/s) and, where the
model's FLOPs (models/flops.py) and the device's peak (PEAK_FLOPS) are both known, MFU.

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

from mixers.flops import FlopsUnknown

# Peak dense matmul FLOP/s of one device, by jax's device_kind and the compute dtype (vendor
# datasheets, no sparsity). float32 on A100/H100/H200 is TF32 tensor-core math; TPUs multiply
# float32 in bfloat16 passes at JAX's default precision. A kind not listed: MFU is omitted.
PEAK_FLOPS = {
    'Tesla V100-SXM2-16GB': {'float32': 15.7e12},
    'Tesla V100-SXM2-32GB': {'float32': 15.7e12},
    'NVIDIA A100-SXM4-40GB': {'bfloat16': 312e12, 'float32': 156e12},
    'NVIDIA A100-SXM4-80GB': {'bfloat16': 312e12, 'float32': 156e12},
    'NVIDIA H100 80GB HBM3': {'bfloat16': 989e12, 'float32': 495e12},
    'NVIDIA H200': {'bfloat16': 989e12, 'float32': 495e12},
    'TPU v4': {'bfloat16': 275e12, 'float32': 275e12},
    'TPU v5 lite': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5p': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v6 lite': {'bfloat16': 918e12, 'float32': 918e12},
}


def speed_facts(task, config) -> dict:
  """What the log reports beside steps/s: the task's unit and units per step, the model FLOPs
  per step and the mesh's peak FLOP/s; 'mfu_omitted' says why MFU cannot be given."""
  facts = {'throughput_unit': task.example_unit,
           'units_per_step': int(config.batch_size * task.units_per_example())}
  try:
    facts['flops_per_step'] = float(task.train_flops(config.batch_size))
  except FlopsUnknown as e:
    return {**facts, 'mfu_omitted': str(e)}
  kind, dtype = jax.devices()[0].device_kind, config.model.get('compute_dtype', 'float32')
  peak = PEAK_FLOPS.get(kind, {}).get(dtype)
  if peak is None:
    return {**facts, 'mfu_omitted': f'peak FLOPs unknown for device kind {kind!r} in {dtype} '
                                     f'(trainlib/metrics.py PEAK_FLOPS): MFU omitted'}
  return {**facts, 'peak_flops': peak * jax.device_count()}


class MetricWriter:

  def __init__(self, workdir: str, total_steps: int, unit: str = 'bits', purge_step: int = 0,
               speed: dict | None = None):
    """purge_step: a resumed run's first step; TensorBoard hides what earlier runs logged from
    that step on (metrics.jsonl is trimmed by trainlib.workdir). speed: speed_facts(...), for
    units/s and MFU in the train rows."""
    self.active = jax.process_index() == 0
    self.workdir, self.total, self.unit = workdir, total_steps, unit
    self.speed = speed or {}
    self._tb = None
    self._jsonl = None
    self._t0 = self._s0 = None  # speed is measured from the first logged step on
    self._paused = 0.0          # eval/checkpoint time, left out of steps/s and ETA
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # imported here: only process 0 writes
      self._tb = SummaryWriter(os.path.join(workdir, 'tb'), purge_step=purge_step or None)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
      if 'mfu_omitted' in self.speed:
        print(self.speed['mfu_omitted'], flush=True)

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
      scalars.update(speed_scalars(rate, self.speed))
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
    unit = self.speed.get('throughput_unit')
    speed = ('steps_per_s', f'{unit}_per_s', 'model_flops_per_s', 'mfu')
    shown = '  '.join(f'{k} {v:.4f}' for k, v in sorted(s.items(), key=lambda kv: kv[0] != 'loss')
                      if k not in ('lr', 'grad_norm', *speed))
    line = f'step {step}/{self.total}  {shown}  lr {s["lr"]:.2e}  '
    if rate:
      line += f'{rate:.2f} steps/s'
      line += f'  {s[speed[1]]:,.0f} {unit}/s' if speed[1] in s else ''
      line += f'  MFU {100 * s["mfu"]:.2f}%' if 'mfu' in s else ''
      line += f'  ETA {_hms(eta)}'
    else:
      line += 'measuring speed...'
    print(line, flush=True, file=sys.stdout)

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()


def speed_scalars(steps_per_s: float, speed: dict) -> dict:
  """steps/s -> the train row's speed values: steps_per_s, <unit>_per_s, model_flops_per_s, mfu
  (each where speed_facts knew what it needs)."""
  out = {'steps_per_s': steps_per_s}
  if 'units_per_step' in speed:
    out[f'{speed["throughput_unit"]}_per_s'] = steps_per_s * speed['units_per_step']
  if 'flops_per_step' in speed:
    out['model_flops_per_s'] = steps_per_s * speed['flops_per_step']
    if 'peak_flops' in speed:
      out['mfu'] = out['model_flops_per_s'] / speed['peak_flops']
  return out


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
