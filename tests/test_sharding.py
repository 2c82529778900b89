"""8 fake CPU devices: data parallel, FSDP and tensor parallel give the single-device losses."""
import json
import os
import subprocess
import sys

import numpy as np

import train
from tests.helpers import read_metrics, tiny_config, tiny_text, write_enwik8_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sharded_runs_match_one_device(tmp_path):
  zip_path = write_enwik8_zip(tmp_path / 'enwik8.zip', tiny_text())
  train.train_and_evaluate(tiny_config(zip_path), str(tmp_path / 'one'))
  one = [r['loss'] for r in read_metrics(tmp_path / 'one')]

  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, '-m', 'tests.sharded_run', zip_path, str(tmp_path)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = json.loads(lines[0][len('RESULT '):])

  for name in ('dp', 'fsdp', 'dp_tp'):
    np.testing.assert_allclose(out[name]['loss'], one, rtol=2e-5, err_msg=name)
  # Each device holds the parameter block the mesh gives it ([32, 64] kernel, 'embed'->fsdp,
  # 'mlp'->tensor): whole under data parallel, 1/8 of the rows under FSDP, half the columns
  # under 2-way tensor parallel.
  assert out['dp']['kernel_shard'] == [32, 64]
  assert out['fsdp']['kernel_shard'] == [4, 64]
  assert out['dp_tp']['kernel_shard'] == [32, 32]
  assert 'batch_size=12 does not divide over the 8 data shards' in out['bad_batch_error']
