"""The one place where nats become the units the papers report."""
from __future__ import annotations

import math

LN2 = math.log(2.0)


def bits(nats):
  """Mean NLL in nats per token -> bits per token (bits/char, bits/dim)."""
  return nats / LN2
