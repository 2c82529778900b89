"""One process of test_remesh.py, with N fake CPU devices (XLA_FLAGS set by the test). The two
processes pass one workdir back and forth: the 8-device one trains steps 1-3 in data parallel,
the 4-device one resumes there in FSDP for steps 4-6, the 8-device one resumes there in data
parallel to the end. Each leg stops itself with SIGTERM (the preemption path) after 3 steps.

  python -m tests.remesh_run ZIP WORKDIR dp|fsdp
"""
import json
import os
import signal
import sys
import time

import jax

import train
from tests.helpers import on_each_batch, tiny_config
from trainlib.checkpoints import Checkpoints
from trainlib.run import Run

MESHES = {'dp': dict(data=-1, fsdp=1, tensor=1), 'fsdp': dict(data=1, fsdp=-1, tensor=1)}
LEGS = {'dp': (0, 6), 'fsdp': (3,)}  # the step each of this mesh's legs starts from


def config(zip_path, mesh):
  c = tiny_config(zip_path, mesh=MESHES[mesh])
  c.evals = {}  # the losses tell; no evaluator to compile
  return c


def stop_after(batches: int):
  """Makes the next run send itself SIGTERM as it fetches its batch number `batches` (handled:
  that step finishes and is saved); returns the undo."""
  return on_each_batch(lambda n: n == batches and os.kill(os.getpid(), signal.SIGTERM))


def wait_for_step(workdir, step):
  deadline = time.time() + 400
  while not os.path.exists(os.path.join(workdir, f'leg_{step}.done')):
    assert time.time() < deadline, f'no leg reached step {step}'
    time.sleep(0.5)


def main(zip_path, workdir, mesh):
  out = {'devices': jax.device_count(), 'legs': []}
  for start in LEGS[mesh]:
    if start:
      wait_for_step(workdir, start)
    undo = stop_after(3) if start < 6 else None  # the last leg runs to the end
    result = train.train_and_evaluate(config(zip_path, mesh), workdir)
    if undo:
      undo()
    ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), read_only=True)
    step, state, _ = ckpt.restore(Run(config(zip_path, mesh), steps=1).state)
    ckpt.close()
    # An MLP kernel ([32, 64]; a leading layers axis when the blocks are stacked).
    kernel = next(x for path, x in jax.tree_util.tree_leaves_with_path(state['params'])
                  if "['mlp']['up']['kernel']" in jax.tree_util.keystr(path))
    out['legs'].append({'start': start, 'step': result['step'], 'saved': step,
                        'kernel_shard': list(kernel.sharding.shard_shape(kernel.shape))[-2:]})
    open(os.path.join(workdir, f'leg_{result["step"]}.done'), 'w').close()
  print('RESULT ' + json.dumps(out), flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
