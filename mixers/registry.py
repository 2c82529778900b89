"""One registry for every token mixer: `build(name, dim=..., num_heads=..., ...)`."""
from __future__ import annotations

import inspect
from typing import Callable

_REGISTRY: dict[str, type] = {}
# Arguments every mixer receives from the backbone; the rest are mixer options.
COMMON_ARGS = ('dim', 'num_heads', 'max_len', 'causal', 'rngs')


def register(name: str) -> Callable[[type], type]:
  def wrap(cls: type) -> type:
    if name in _REGISTRY:
      raise ValueError(f'mixer {name!r} is registered twice')
    _REGISTRY[name] = cls
    return cls
  return wrap


def names() -> list[str]:
  return sorted(_REGISTRY)


def options(name: str) -> list[str]:
  """The mixer-specific keyword options `name` accepts (beyond COMMON_ARGS)."""
  params = inspect.signature(_get(name).__init__).parameters
  return [p for p in params if p not in ('self', *COMMON_ARGS)]


def _get(name: str) -> type:
  if name not in _REGISTRY:
    raise ValueError(f'unknown mixer {name!r}; registered mixers: {", ".join(names())}')
  return _REGISTRY[name]


def build(name: str, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs,
          **opts):
  """Builds mixer `name`; unknown names or options raise listing what exists."""
  cls = _get(name)
  allowed = options(name)
  unknown = sorted(set(opts) - set(allowed))
  if unknown:
    raise ValueError(f'mixer {name!r} got unknown option(s) {unknown}; '
                     f'its options are: {allowed or "none"}')
  return cls(dim=dim, num_heads=num_heads, max_len=max_len, causal=causal, rngs=rngs,
             **opts)
