"""One measurement in a fresh process:  python -m bench.worker SPEC_JSON RESULT_PATH

A fresh process isolates out-of-memory crashes and makes ru_maxrss the measurement's
own. The result row is rewritten after every phase, so a run killed by the OOM killer
or the parent's timeout still leaves the phases it finished.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import traceback

from bench import system
from bench.measure import NotApplicable, is_out_of_memory


def run(spec, record):
  """Imports per kind: a JAX case never loads torch, a PyTorch one never loads JAX."""
  kind = spec['kind']
  if kind == 'probe':
    return record(**system.jax_device(), **system.torch_device())
  if kind == 'jax':
    from bench import jax_cases
    return jax_cases.measure(spec, record)
  if kind == 'torch':
    from bench import torch_peers
    return torch_peers.measure(spec, record)
  if kind == 'train':
    from bench import train_cases
    return train_cases.measure(spec, record)
  raise ValueError(f'unknown measurement kind {kind!r}')


def main(spec_json: str, path: str) -> None:
  spec, row = json.loads(spec_json), {}

  def record(**fields):
    row.update(fields)
    with open(path + '.tmp', 'w') as f:
      json.dump(row, f)
    os.replace(path + '.tmp', path)

  if spec.get('memory_limit_bytes'):  # CPU only: a GPU runtime maps far more address space
    limit = spec['memory_limit_bytes']
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  try:
    run(spec, record)
    record(status='ok')
  except NotApplicable as e:
    record(status='n/a', error=str(e))
  except Exception as e:  # recorded in the row; the sweep goes on with the next case
    traceback.print_exc()
    message = str(e).strip().splitlines()
    record(status='oom' if is_out_of_memory(e) else 'error',
           error=f'{type(e).__name__}: {message[0][:300] if message else ""}')


if __name__ == '__main__':
  main(*sys.argv[1:])
