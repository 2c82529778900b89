"""One registry for every token mixer: `build(name, dim=..., num_heads=..., ...)`.

Mixer families register themselves with `@register(name)` when their module is
imported; the registry imports the modules in FAMILIES the first time it is asked
for a mixer, so `import mixers` loads only the contract and the families'
packages (aft, performer) depend on mixers, never the other way round.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from mixers.layers import sharding_scope

# Modules that register mixers; a new family adds its module here.
FAMILIES = ('mixers.softmax', 'mixers.linear_attention', 'mixers.linformer', 'mixers.lsh',
            'mixers.mlp_mixer', 'mixers.routing', 'mixers.sinkhorn', 'mixers.sparse_attention',
            'mixers.synthesizer', 'aft.modules', 'performer.modules')
# Arguments every mixer receives from the backbone; the rest are mixer options.
COMMON_ARGS = ('dim', 'num_heads', 'max_len', 'causal', 'rngs')

_REGISTRY: dict[str, type] = {}
_discovered = False


def register(name: str) -> Callable[[type], type]:
  def wrap(cls: type) -> type:
    if name in _REGISTRY:
      raise ValueError(f'mixer {name!r} is registered twice')
    _REGISTRY[name] = cls
    cls.registered_name = name
    return cls
  return wrap


def _discover() -> None:
  """Imports every family module once (an already imported one is not run again)."""
  global _discovered
  if not _discovered:
    for module in FAMILIES:
      importlib.import_module(module)
    _discovered = True


def names() -> list[str]:
  _discover()
  return sorted(_REGISTRY)


def _parameters(name: str) -> dict[str, inspect.Parameter]:
  """The mixer-specific keyword parameters of `name`'s constructor (beyond COMMON_ARGS)."""
  params = inspect.signature(_get(name).__init__).parameters
  return {p: v for p, v in params.items() if p not in ('self', *COMMON_ARGS)}


def options(name: str) -> list[str]:
  """The mixer-specific keyword options `name` accepts (beyond COMMON_ARGS)."""
  return list(_parameters(name))


def option_defaults(name: str) -> dict[str, Any]:
  """Every option of `name` with its constructor default."""
  return {p: v.default for p, v in _parameters(name).items()}


def _get(name: str) -> type:
  _discover()
  if name not in _REGISTRY:
    raise ValueError(f'unknown mixer {name!r}; registered mixers: {", ".join(names())}')
  return _REGISTRY[name]


def build(name: str, *, dim: int, num_heads: int, max_len: int, causal: bool, rngs,
          **opts):
  """Builds mixer `name`; unknown names or options raise listing what exists.

  Parameters are sharded by their logical axes inside a mesh, unsharded outside one.
  """
  cls = _get(name)
  allowed = options(name)
  unknown = sorted(set(opts) - set(allowed))
  if unknown:
    raise ValueError(f'mixer {name!r} got unknown option(s) {unknown}; '
                     f'its options are: {allowed or "none"}')
  with sharding_scope():
    return cls(dim=dim, num_heads=num_heads, max_len=max_len, causal=causal, rngs=rngs,
               **opts)
