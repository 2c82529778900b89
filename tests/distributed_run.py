"""One of the processes of test_sharding.py's two-process jax.distributed run (CPU, gloo)."""
import json
import sys

import jax

import train
from tests.helpers import tiny_config


def main(port, process_id, zip_path, workdir):
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'localhost:{port}', num_processes=2,
                             process_id=int(process_id))
  assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
  result = train.train_and_evaluate(tiny_config(zip_path), workdir)
  print('RESULT ' + json.dumps({'valid_bits': result['valid']['bits']}), flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
