"""One side of test_remesh.py, in a fresh process with N fake CPU devices (XLA_FLAGS set by the
test): trains the tiny config 6 steps on its own mesh, then, once the other side's run is done,
resumes a copy of it from step 3 on this mesh.

  python -m tests.remesh_run ZIP DIR NAME MESH OTHER   (MESH, OTHER: 'dp' or 'fsdp')
"""
import json
import os
import shutil
import sys
import time

import jax

import train
from tests.helpers import read_metrics, tiny_config
from trainlib.checkpoints import Checkpoints
from trainlib.run import Run

MESHES = {'dp': dict(data=-1, fsdp=1, tensor=1), 'fsdp': dict(data=1, fsdp=-1, tensor=1)}


def config(zip_path, mesh):
  c = tiny_config(zip_path, mesh=MESHES[mesh], num_steps=6, checkpoint_every=3,
                  **{'evals.valid.every': 0})
  del c.evals['sample']
  return c


def main(zip_path, root, mesh, other):
  own = os.path.join(root, mesh)
  train.train_and_evaluate(config(zip_path, mesh), own)
  open(own + '.done', 'w').close()
  deadline = time.time() + 400
  while not os.path.exists(os.path.join(root, other) + '.done'):
    assert time.time() < deadline, 'the other side never finished'
    time.sleep(0.5)
  # The other mesh's run, cut back to its step-3 checkpoint, resumed on this mesh.
  moved = os.path.join(root, f'{other}_on_{mesh}')
  shutil.copytree(os.path.join(root, other), moved)
  for step in ('6',):
    shutil.rmtree(os.path.join(moved, 'checkpoints', step))
  train.train_and_evaluate(config(zip_path, mesh), moved)
  ckpt = Checkpoints(os.path.join(moved, 'checkpoints'), read_only=True)
  _, state, _ = ckpt.restore(Run(config(zip_path, mesh), steps=1).state)
  ckpt.close()
  # An MLP kernel ([32, 64]; a leading layers axis when the blocks are stacked).
  kernel = next(x for path, x in jax.tree_util.tree_leaves_with_path(state['params'])
                if "['mlp']['up']['kernel']" in jax.tree_util.keystr(path))
  print('RESULT ' + json.dumps({
      'devices': jax.device_count(),
      'loss': {r['step']: r['loss'] for r in read_metrics(own)},
      'resumed_loss': {r['step']: r['loss'] for r in read_metrics(moved)},
      'resumed_kernel_shard': list(kernel.sharding.shard_shape(kernel.shape))[-2:]}),
      flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
