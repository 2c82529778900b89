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
  scan = {'model.scan_layers': True, 'model.remat': 'dots'}
  for name, mesh, layout in [('dp', dict(data=-1, fsdp=1, tensor=1), {}),
                             ('fsdp', dict(data=1, fsdp=-1, tensor=1), {}),
                             ('dp_tp', dict(data=4, fsdp=1, tensor=2), {}),
                             ('fsdp_tp_scan', dict(data=1, fsdp=4, tensor=2), scan)]:
    config = tiny_config(zip_path, mesh=mesh, **layout)
    train.train_and_evaluate(config, f'{workdir}/{name}')
    state = Run(config, steps=1).state
    layers = state['params']['blocks']['layers']
    # [32, 64] (the scanned layout: [2, 32, 64], the layers stacked)
    kernel = (layers if layout else layers[0])['mlp']['up']['kernel'][...]
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
