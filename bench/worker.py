"""One measurement in a fresh process:  python -m bench.worker SPEC_JSON RESULT_PATH

A fresh process isolates out-of-memory crashes and makes ru_maxrss the measurement's
own. The result row is rewritten after every phase, so a run killed by the OOM killer
or the parent's timeout still leaves the phases it finished.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import traceback

from bench import system
from bench.measure import NotApplicable, is_out_of_memory


# Measurement kind -> the module whose measure(spec, record) runs it. Imported per kind: a
# JAX case never loads torch, a PyTorch one never loads JAX.
KINDS = {'jax': 'bench.jax_cases', 'torch': 'bench.torch_peers', 'train': 'bench.train_cases',
         'torch_train': 'bench.torch_train', 'core': 'bench.core_cases',
         'torch_core': 'bench.torch_cores'}


def run(spec, record):
  kind = spec['kind']
  if kind == 'probe':
    return record(**system.jax_device(), **system.torch_device())
  if kind not in KINDS:
    raise ValueError(f'unknown measurement kind {kind!r}; kinds: probe, {", ".join(KINDS)}')
  return importlib.import_module(KINDS[kind]).measure(spec, record)


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
