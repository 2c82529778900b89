"""Peak memory of an LRA run's train step, for the chart's bubbles: XLA's memory analysis of
the compiled step (arguments + outputs + temporaries - donated aliases) at the run's config,
written to <run>/memory.json. Compiles, does not train; needs no data (zeros of the batch's
shape).

  python -m results.lra_memory RUN_DIR...
"""
from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import numpy as np


def peak_bytes(config) -> tuple[int, str]:
  from trainlib.run import Run
  run = Run(config, steps=max(config.optim.warmup_steps, 1) + 1)
  task = run.task
  shape = (config.batch_size,) + ((2,) if task.spec.pair else ()) + (task.length,)
  batch = run.to_global({'tokens': np.ones(shape, np.int32),
                         'label': np.zeros(config.batch_size, np.int32)})
  stats = run.train_step.lower(run.state, batch).compile().memory_analysis()
  total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
           + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
  return int(total), jax.devices()[0].device_kind


def main(argv: list[str]) -> int:
  if not argv:
    print(__doc__, file=sys.stderr)
    return 1
  for workdir in argv:
    with open(os.path.join(workdir, 'config.json')) as f:
      config = ml_collections.ConfigDict(json.load(f))
    total, device = peak_bytes(config)
    with open(os.path.join(workdir, 'memory.json'), 'w') as f:
      json.dump({'peak_bytes': total, 'device': device,
                 'method': 'XLA memory_analysis of the compiled train step'}, f, indent=2)
    print(f'{workdir}: {total / 2 ** 20:.1f} MiB peak ({device})', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
