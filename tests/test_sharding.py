"""Fake CPU devices: data parallel, FSDP, tensor parallel and a two-process jax.distributed run
give the single-device losses."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_with_devices(n):
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
              JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)


def result_of(stdout, stderr):
  lines = [l for l in stdout.splitlines() if l.startswith('RESULT ')]
  assert lines, stdout[-3000:] + (stderr or '')[-3000:]
  return json.loads(lines[0][len('RESULT '):])


@pytest.fixture(scope='module')
def one_device(zip_path, reference):
  workdir, result = reference
  return zip_path, [r['loss'] for r in read_metrics(workdir)], result['valid']['bits']


def test_eight_devices_match_one_device(one_device, tmp_path):
  zip_path, one, _ = one_device
  proc = subprocess.run([sys.executable, '-m', 'tests.sharded_run', zip_path, str(tmp_path)],
                        cwd=ROOT, env=env_with_devices(8), capture_output=True, text=True,
                        timeout=600)
  out = result_of(proc.stdout, proc.stderr)
  for name in ('dp', 'fsdp', 'dp_tp', 'fsdp_tp_scan'):
    np.testing.assert_allclose(out[name]['loss'], one, rtol=2e-5, err_msg=name)
  # Each device holds the parameter block the mesh gives it ([32, 64] kernel, 'embed'->fsdp,
  # 'mlp'->tensor): whole under data parallel, 1/8 of the rows under FSDP, half the columns
  # under 2-way tensor parallel.
  assert out['dp']['kernel_shard'] == [32, 64]
  assert out['fsdp']['kernel_shard'] == [4, 64]
  assert out['dp_tp']['kernel_shard'] == [32, 32]
  assert out['fsdp_tp_scan']['kernel_shard'] == [2, 8, 32]  # layers whole, 4-way FSDP, 2-way TP
  assert 'batch_size=12 does not divide over the 8 data shards' in out['bad_batch_error']


def test_two_processes_match_one_device(one_device, tmp_path):
  zip_path, one, one_bits = one_device
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'tests.distributed_run', str(port), str(i), zip_path,
       str(tmp_path)], cwd=ROOT, env=env_with_devices(2), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (stdout, stderr) in zip(procs, outs):
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert result_of(stdout, stderr)['valid_bits'] == pytest.approx(one_bits, rel=2e-5)
  # Only process 0 writes metrics; the checkpoint is complete.
  np.testing.assert_allclose([r['loss'] for r in read_metrics(tmp_path)], one, rtol=2e-5)
  assert os.path.isdir(tmp_path / 'checkpoints' / '12' / 'state')
