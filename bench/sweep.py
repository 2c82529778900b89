"""Parent side: runs each case in a fresh worker process with a timeout, longest last."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from bench import system

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Don't let XLA grab most of a GPU up front: the device peak must be the case's own.
WORKER_ENV = {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}


def run_case(spec: dict, timeout: float) -> dict:
  """Runs one measurement; returns its row with 'status' ('ok', 'n/a', 'oom', 'error',
  'timeout' or 'killed'), 'error' when not ok, and the worker's wall time."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'row.json')
    start = time.perf_counter()
    try:
      proc = subprocess.run([sys.executable, '-m', 'bench.worker', json.dumps(spec), path],
                            cwd=ROOT, env={**os.environ, **WORKER_ENV}, timeout=timeout,
                            capture_output=True, text=True)
    except subprocess.TimeoutExpired:
      proc = None
    row = {}
    if os.path.exists(path):
      with open(path) as f:
        row = json.load(f)
  if proc is None:
    row.update(status='timeout', error=f'over the {timeout:g} s timeout')
  elif 'status' not in row:  # the worker died without reporting (killed, crashed)
    tail = (proc.stderr.strip().splitlines() or [''])[-1][:300]
    killed = proc.returncode < 0
    row.update(status='killed' if killed else 'error',
               error=(f'signal {-proc.returncode} (on CPU usually the OOM killer)' if killed
                      else f'exit code {proc.returncode}: {tail}'))
  row['wall_s'] = round(time.perf_counter() - start, 2)
  return row


def probe(timeout: float) -> dict:
  """The machine and its device, as a worker sees them (the parent starts no backend)."""
  device = run_case({'kind': 'probe'}, timeout)
  if device['status'] != 'ok':
    raise SystemExit(f'could not start a worker: {device.get("error")}')
  return {**system.host(), **{k: v for k, v in device.items() if k not in ('status', 'wall_s')}}


def torch_skip_reason(machine: dict) -> str | None:
  """Why PyTorch peers cannot run beside the JAX cases here, or None when they can. They run
  only on the device JAX uses (a CPU build of torch beside a GPU would compare devices)."""
  torch_device = machine.get('torch_device')
  if torch_device is None:
    return 'torch is not installed (pip install -r bench/requirements-peers.txt)'
  if (torch_device == 'cuda') != (machine['backend'] == 'gpu'):
    return f'torch runs on {torch_device}, JAX on {machine["backend"]}'
  return None


def memory_limit(backend: str, gib: float) -> int | None:
  """Address-space cap per CPU worker (gib; -1: 90% of RAM; 0: none), so one runaway case
  fails alone instead of pushing the machine into the OOM killer. GPU runtimes reserve
  far more address space than they use, so no cap there."""
  total = system.memory_bytes()
  if backend != 'cpu' or gib == 0 or not total:
    return None
  return int(gib * 2**30) if gib > 0 else int(0.9 * total)


def sweep(cases: list[dict], lengths: list[int], timeout: float, log=print) -> list[dict]:
  """Every case at every length, shortest first; once a case fails at a length, its longer
  lengths are not run (recorded as 'skipped', or 'n/a' when the mode does not exist)."""
  rows = []
  for case in cases:
    failed = None
    for length in sorted(lengths):
      spec = {**case, 'length': length}
      if failed:
        row = {'status': 'n/a' if failed == 'n/a' else 'skipped',
               'error': f'{failed} at a shorter length'}
      else:
        row = run_case(spec, timeout)
        failed = None if row['status'] == 'ok' else row['status']
      rows.append({**spec, **row})
      log(rows[-1])
  return rows
