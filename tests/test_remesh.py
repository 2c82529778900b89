"""A checkpoint written on 8 devices in data parallel resumes on 4 devices in FSDP, and the
reverse: the restore target carries the new mesh's shardings. One 12-step run passes between
the two meshes (steps 1-3 on 8 devices, 4-6 on 4, 7-12 on 8) and logs the one-device losses."""
import subprocess
import sys

import numpy as np

from tests.helpers import read_metrics
from tests.test_sharding import ROOT, env_with_devices, result_of


def test_checkpoints_resume_on_another_mesh(reference, zip_path, tmp_path):
  procs = {mesh: subprocess.Popen(
      [sys.executable, '-m', 'tests.remesh_run', zip_path, str(tmp_path), mesh], cwd=ROOT,
      env=env_with_devices(n), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for mesh, n in (('dp', 8), ('fsdp', 4))}
  out, stdout = {}, {}
  for mesh, p in procs.items():
    stdout[mesh], stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stdout[mesh][-3000:] + stderr[-3000:]
    out[mesh] = result_of(stdout[mesh], stderr)
  assert out['dp']['devices'] == 8 and out['fsdp']['devices'] == 4
  # Each leg resumed where the other mesh stopped; the restored arrays are laid out by the
  # reading mesh ([32, 64] kernel, 'embed' -> fsdp: a quarter of the rows on each of 4).
  assert [(l['start'], l['step'], l['saved'], l['kernel_shard']) for l in out['dp']['legs']] == [
      (0, 3, 3, [32, 64]), (6, 12, 12, [32, 64])]
  assert [(l['start'], l['step'], l['saved'], l['kernel_shard']) for l in out['fsdp']['legs']] == [
      (3, 6, 6, [8, 64])]
  assert 'Resumed from' in stdout['fsdp'] and '/3 (step 3) with config changes: mesh.' in stdout['fsdp']
  assert '/6 (step 6) with config changes: mesh.' in stdout['dp']
  losses = read_metrics(tmp_path)
  assert [r['step'] for r in losses] == list(range(1, 13))
  np.testing.assert_allclose([r['loss'] for r in losses],
                             [r['loss'] for r in read_metrics(reference[0])], rtol=2e-5)
