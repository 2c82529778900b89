"""bench.cores at tiny sizes: every JAX core runs and its row is set against the one it
must beat (never a timing asserted), the PyTorch peers are named when skipped, and the
cores compute what they are named for."""
import json
import os
import subprocess
import sys

import jax
import numpy as np

from bench import core_cases, cores
from mixers import references

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cores_table_sets_each_core_against_its_peer(tmp_path):
  names = ['favor', 'jax_favor_scan', 'aft_simple', 'aft_local', 'torch_sdpa']
  proc = subprocess.run(
      [sys.executable, '-m', 'bench.cores', f'--cores={",".join(names)}', '--lengths=32,64',
       '--modes=causal', '--heads=2', '--head_dim=8', '--repeats=1', f'--out={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.load(open(tmp_path / 'cores_cpu.json'))['rows']
  ran = {(r['impl'], r['length']): r for r in rows}
  torch_missing = 'peer torch_sdpa skipped' in proc.stdout
  assert set(ran) == {(n, l) for n in names for l in (32, 64)
                      if n != 'torch_sdpa' or not torch_missing}
  assert all(r['status'] == 'ok' and r['fwdbwd_s'] > 0 for r in ran.values())
  table = open(tmp_path / 'cores_cpu.md').read()
  assert '| favor | causal | 64 |' in table and '| jax_favor_scan |' in table
  line = next(l for l in table.splitlines() if l.startswith('| aft_local | causal | 64 |'))
  cells = [c.strip() for c in line.strip('| ').split('|')]
  assert cells[8] == 'aft_simple' and float(cells[9]) > 0  # against AFT-simple: time ratio
  assert '| core | mode | time slope | memory slope | XLA temp slope |' in table


def _inputs(shapes, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [jax.random.normal(key, (2, *shapes[n])) for key, n in zip(keys, 'qkv')]


def test_linear_core_is_causal_linear_attention():
  fn, shapes = core_cases.core('linear', length=40, heads=2, head_dim=8, causal=True)
  q, k, v = _inputs(shapes)
  heads = lambda x: np.swapaxes(np.asarray(x, np.float64), 1, 2)  # [B, H, L, D]
  phi = lambda x: heads(jax.nn.elu(x) + 1)
  expected = references.linear_attention(phi(q), phi(k), heads(v), causal=True)
  np.testing.assert_allclose(fn(q, k, v), np.swapaxes(expected, 1, 2), rtol=1e-4, atol=1e-5)


def test_unknown_core_is_an_error():
  proc = subprocess.run([sys.executable, '-m', 'bench.cores', '--cores=flash'], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and 'unknown core' in proc.stderr
  assert set(cores.VERSUS.values()) <= set(cores.OURS + cores.JAX_PEERS + cores.TORCH_PEERS)
