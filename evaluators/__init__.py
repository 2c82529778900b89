"""Evaluators: small plug-ins that yield (name, value) pairs from a train state.

A config lists them as `config.evals.<name> = dict(type=..., every=..., ...)`; the
type names a module (`'bits'` -> `evaluators.bits`, or a dotted path for one outside
this package) whose `Evaluator(task, run, **options)` has `run(state, final) ->
iterator of (name, value)`. `every` is the cadence in steps (0: only at the end of
training); the remaining keys are the evaluator's options. Values are floats, text
(str) or images (uint8 [N, H, W, 3]); train.py logs them under `<name>/`, eval.py
writes them into a results row.
"""
from __future__ import annotations

import importlib


def _class(name: str, kind: str | None):
  if kind is None:
    raise ValueError(f'config.evals.{name} has no type (e.g. bits, accuracy, samples)')
  path = kind if '.' in kind else f'evaluators.{kind}'
  try:
    module = importlib.import_module(path)
  except ModuleNotFoundError as e:
    if e.name != path:
      raise
    raise ValueError(f'config.evals.{name}: unknown evaluator type {kind!r} (no module {path!r}); '
                     f'built-in: accuracy, bits, samples') from None
  return module.Evaluator


def build_all(config, task, run, split: str | None = None) -> dict:
  """{name: (evaluator, every)} for config.evals. With `split`, only the evaluators that read
  a split, all of them on that split (eval.py)."""
  out = {}
  for name, cfg in config.evals.items():
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    cls = _class(name, cfg.pop('type', None))
    every = cfg.pop('every', 0)
    if every is None or every < 0:
      raise ValueError(f'config.evals.{name}.every must be >= 0 (0: only at the end), got {every}')
    if split is not None:
      if not cls.reads_split:
        continue
      cfg['split'] = split
    try:
      out[name] = (cls(task, run, **cfg), every)
    except TypeError as e:
      raise ValueError(f'config.evals.{name}: {e}') from None
  return out
