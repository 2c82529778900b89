"""Run by test_sharding.py in a fresh process with 8 fake CPU devices (XLA_FLAGS set by the test)."""
import json
import sys

import jax

import train
from tests.helpers import read_metrics, tiny_config
from trainlib.run import Run


def main(zip_path, workdir):
  assert jax.device_count() == 8, jax.devices()
  out = {}
  for name, mesh in [('dp', dict(data=-1, fsdp=1, tensor=1)),
                     ('fsdp', dict(data=1, fsdp=-1, tensor=1)),
                     ('dp_tp', dict(data=4, fsdp=1, tensor=2))]:
    config = tiny_config(zip_path, mesh=mesh)
    train.train_and_evaluate(config, f'{workdir}/{name}')
    state = Run(config, steps=1).state
    kernel = state['params']['blocks']['layers'][0]['mlp']['up']['kernel'][...]  # [32, 64]
    out[name] = {'loss': [r['loss'] for r in read_metrics(f'{workdir}/{name}')],
                 'kernel_shard': list(kernel.sharding.shard_shape(kernel.shape))}
  try:
    config = tiny_config(zip_path, batch_size=12)
    train.train_and_evaluate(config, f'{workdir}/bad')
  except ValueError as e:
    out['bad_batch_error'] = str(e)
  print('RESULT ' + json.dumps(out))


if __name__ == '__main__':
  main(*sys.argv[1:])
