"""What train.py and eval.py share on the command line: flag errors as one line, status 2."""
from __future__ import annotations

import re
import sys

from absl import flags


def _fail(error, status: int = 2):
  """One ERROR line on stderr, then exit with `status` (2: a config or input error)."""
  print(f'ERROR: {error}', file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv):
  """absl's flag parsing (app.run's flags_parser) with a bad flag or config field reported in
  one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # config_flags raises many types for a bad --config
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    last = re.sub(r'^\w+Error: ', '', lines[-1] if lines else type(e).__name__).strip('"')
    if re.fullmatch(r"'[^']*'", last):  # a bare name: ml_collections' unknown field
      last = f'unknown config field {last}'
    _fail(f'{last} (in the command-line flags; --helpfull lists them)')
