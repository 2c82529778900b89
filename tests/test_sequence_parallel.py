"""Sequence parallelism on 8 fake CPU devices (one subprocess, tests/sequence_parallel_run.py):
every mixer with a path equals its single-device computation, outputs and gradients, with the
length split 8 ways and 4 ways x 2 data ways at a length that divides into neither; causal
outputs stay bitwise independent of later positions; mixers without a path refuse; the byte LM
trains with mesh.sequence=4 to the one-device losses."""
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import read_metrics
from tests.test_sharding import ROOT, env_with_devices, result_of


@pytest.fixture(scope='module')
def sharded_run(zip_path, tmp_path_factory):
  """Started before the one-device reference is asked for, so the two can overlap."""
  workdir = tmp_path_factory.mktemp('sequence_parallel')
  proc = subprocess.Popen([sys.executable, '-m', 'tests.sequence_parallel_run', zip_path,
                           str(workdir)], cwd=ROOT, env=env_with_devices(8),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  yield proc
  if proc.poll() is None:
    proc.kill()


@pytest.fixture(scope='module')
def result(sharded_run, reference):
  stdout, stderr = sharded_run.communicate(timeout=900)
  return result_of(stdout, stderr)


def test_every_path_equals_one_device(result):
  cases = result['mixers']
  assert {c['name'] for c in cases} == {'performer', 'linear', 'aft_simple', 'aft_local',
                                        'aft_conv', 'softmax', 'local', 'longformer'}
  for c in cases:
    label = f"{c['name']} causal={c['causal']} data={c['data']} sequence={c['sequence']}"
    assert c['sharded'], label  # the shard_map path ran, not the single-device one
    assert c['out_err'] < 1e-5, label
    assert c['grad_err'] < 1e-5, label
    assert c['causal_exact'], label


def test_mixers_without_a_path_refuse(result):
  assert "mixer 'linformer' has no sequence-parallel path" in result['no_path']
  assert 'config.mesh.sequence=8' in result['no_path']
  assert "mixer 'strided' has no sequence-parallel path" in result['no_reach']
  assert 'window reaching 8 positions' in result['too_wide']
  assert 'config.mesh.sequence' in result['too_wide']


def test_byte_lm_with_the_sequence_split_matches_one_device(result, reference):
  np.testing.assert_allclose(result['lm'], [r['loss'] for r in read_metrics(reference[0])],
                             rtol=2e-5)
