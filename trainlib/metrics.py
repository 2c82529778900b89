"""Metrics to the console (a live progress line), TensorBoard and metrics.jsonl; process 0 only."""
from __future__ import annotations

import json
import os
import sys
import time

import jax


class MetricWriter:

  def __init__(self, workdir: str, total_steps: int):
    self.active = jax.process_index() == 0
    self.total = total_steps
    self._tb = None
    self._jsonl = None
    self._t0 = self._s0 = None  # speed is measured from the first logged step on
    self._paused = 0.0          # eval/checkpoint time, left out of steps/s and ETA
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # imported here: only process 0 writes
      self._tb = SummaryWriter(os.path.join(workdir, 'tb'))
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write_config(self, workdir: str, config) -> None:
    if self.active:
      with open(os.path.join(workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))

  def pause(self, seconds: float) -> None:
    self._paused += seconds

  def write(self, step: int, scalars: dict, prefix: str = 'train') -> None:
    if not self.active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    for k, v in scalars.items():
      self._tb.add_scalar(f'{prefix}/{k}', v, step)
    self._jsonl.write(json.dumps({'step': step, 'split': prefix, **scalars}) + '\n')
    self._jsonl.flush()
    self._tb.flush()
    if prefix == 'train':
      self._progress(step, scalars)
    else:
      print(f'[{prefix}] step {step}: ' + '  '.join(f'{k} {v:.4f}' for k, v in scalars.items()),
            flush=True)

  def _progress(self, step: int, s: dict) -> None:
    now = time.perf_counter()
    if self._t0 is None:
      self._t0, self._s0, self._paused = now, step, 0.0
      rate = eta = None
    else:
      rate = (step - self._s0) / max(now - self._t0 - self._paused, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else None
    line = (f'step {step}/{self.total}  loss {s["loss"]:.4f}  bits {s["bits"]:.4f}  '
            f'lr {s["lr"]:.2e}  ' + (f'{rate:.2f} steps/s  ETA {_hms(eta)}' if rate else
                                    'measuring speed...'))
    print(line, flush=True, file=sys.stdout)

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()


def _hms(seconds: float | None) -> str:
  if seconds is None:
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}:{m:02d}:{s:02d}'
