"""A checkpoint written on 8 devices in data parallel resumes on 4 devices in FSDP, and the
reverse: the restore target carries the new mesh's shardings, and the losses after the resume
are those of the run that wrote it."""
import os
import subprocess
import sys

import numpy as np

from tests.test_sharding import ROOT, env_with_devices, result_of


def test_checkpoints_resume_on_another_mesh(zip_path, tmp_path):
  procs = {mesh: subprocess.Popen(
      [sys.executable, '-m', 'tests.remesh_run', zip_path, str(tmp_path), mesh, other],
      cwd=ROOT, env=env_with_devices(n), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for mesh, other, n in (('dp', 'fsdp', 8), ('fsdp', 'dp', 4))}
  out = {}
  for mesh, p in procs.items():
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    out[mesh] = result_of(stdout, stderr)
    assert 'Resumed from' in stdout and '/3 (step 3) with config changes: mesh.' in stdout
  assert out['dp']['devices'] == 8 and out['fsdp']['devices'] == 4
  for writer, reader in (('dp', 'fsdp'), ('fsdp', 'dp')):
    written, resumed = out[writer]['loss'], out[reader]['resumed_loss']
    assert sorted(resumed, key=int) == [str(s) for s in range(1, 7)]
    for step in ('1', '2', '3'):  # the rows before the checkpoint are the writer's own
      assert resumed[step] == written[step]
    np.testing.assert_allclose([resumed[s] for s in '456'], [written[s] for s in '456'],
                               rtol=2e-5, err_msg=f'{writer} -> {reader}')
  # The restored parameters are laid out by the reading mesh: [32, 64] kernel, 'embed' -> fsdp.
  assert out['fsdp']['resumed_kernel_shard'] == [8, 64]
  assert out['dp']['resumed_kernel_shard'] == [32, 64]
