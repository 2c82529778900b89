"""Runs train.py's or eval.py's command-line entry on the tiny config in a subprocess of a test:

  python -m tests.cli_run train|eval ZIP WORKDIR [dotted.key=value ...] [full_disk_from=STEP]
      [seconds_per_batch=S]

Values are Python literals. full_disk_from=STEP makes creating the directory of every
checkpoint from STEP on fail with ENOSPC, as on a full disk. seconds_per_batch=S slows the
training data down, so a test can signal the run while it trains.
"""
import ast
import errno
import os
import sys
import time

from absl import logging

import eval as eval_lib
import train
from tests.helpers import on_each_batch, tiny_config


def full_disk_from(first_step: int):
  real_mkdir = os.mkdir

  def mkdir(path, *args, **kwargs):
    step = os.path.basename(os.fspath(path)).split('.')[0]
    if step.isdigit() and int(step) >= first_step:
      raise OSError(errno.ENOSPC, 'No space left on device', os.fspath(path))
    return real_mkdir(path, *args, **kwargs)
  os.mkdir = mkdir


def main(command, zip_path, workdir, *assignments):
  overrides = dict(a.split('=', 1) for a in assignments)
  if 'full_disk_from' in overrides:
    full_disk_from(int(overrides.pop('full_disk_from')))
  if 'seconds_per_batch' in overrides:
    seconds = float(overrides.pop('seconds_per_batch'))
    on_each_batch(lambda n: time.sleep(seconds))
  config = tiny_config(zip_path, **{k: ast.literal_eval(v) for k, v in overrides.items()})
  logging.set_verbosity(logging.WARNING)
  if command == 'train':
    return train.cli(config, workdir)
  return eval_lib.cli(config, workdir, 'valid')


if __name__ == '__main__':
  sys.exit(main(*sys.argv[1:]))
