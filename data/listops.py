"""ListOps (Nangia & Bowman 2018) as in Long Range Arena: a generator of our own for the same
grammar, so the task runs offline at any length, and the evaluation of an expression.

An expression is a prefix tree over four operators on the digits 0-9:
  [MIN, [MAX, [MED (the median, rounded down), [SM (the sum mod 10)
each applied to 2..max_args arguments and closed by ']'. The LRA release writes every
(partial application, argument) pair inside parentheses, `[MAX 2 9 ]` as
`( ( ( [MAX 2 ) 9 ) ] )`; `to_string` writes that form, `tokens` drops the parentheses as the
LRA pipeline does. As in LRA's generator a node below max_depth is a leaf with probability
0.75; a tree is kept when its token count (parentheses not counted) lies in
[min_length, max_length], and every kept tree is unique (across all splits of one call).
"""
from __future__ import annotations

import math
from typing import Iterator, Union

import numpy as np

OPERATORS = ('[MIN', '[MAX', '[MED', '[SM')
END = ']'
DIGITS = tuple(str(d) for d in range(10))
LEAF_PROBABILITY = 0.75

Tree = Union[int, tuple]  # a digit, or (operator, [arguments])


def apply(op: str, values: list[int]) -> int:
  if op == '[MIN':
    return min(values)
  if op == '[MAX':
    return max(values)
  if op == '[MED':
    return int(math.floor(float(np.median(values))))
  if op == '[SM':
    return sum(values) % 10
  raise ValueError(f'unknown ListOps operator {op!r}; known: {OPERATORS}')


def evaluate(tree: Tree) -> int:
  if isinstance(tree, int):
    return tree
  op, args = tree
  return apply(op, [evaluate(a) for a in args])


def evaluate_tokens(tokens: list[str]) -> int:
  """The value of a token list (parentheses dropped or not), parsed with a stack."""
  stack: list[list] = []
  result = None
  for tok in tokens:
    if tok in ('(', ')'):
      continue
    if tok in OPERATORS:
      stack.append([tok])
    elif tok == END:
      op, *values = stack.pop()
      value = apply(op, values)
      if stack:
        stack[-1].append(value)
      else:
        result = value
    elif tok in DIGITS:
      if stack:
        stack[-1].append(int(tok))
      else:
        result = int(tok)
    else:
      raise ValueError(f'{tok!r} is not a ListOps token')
  if stack or result is None:
    raise ValueError('unbalanced ListOps expression')
  return result


def tokens(tree: Tree) -> list[str]:
  """The tree's tokens without parentheses (what the model reads)."""
  if isinstance(tree, int):
    return [str(tree)]
  op, args = tree
  out = [op]
  for a in args:
    out += tokens(a)
  return out + [END]


def to_string(tree: Tree) -> str:
  """The release's form: `( ( ( [MAX 2 ) 9 ) ] )` for [MAX 2 9 ]."""
  if isinstance(tree, int):
    return str(tree)
  op, args = tree
  s = f'( {op} {to_string(args[0])} )'
  for a in args[1:]:
    s = f'( {s} {to_string(a)} )'
  return f'( {s} {END} )'


def _tree(rng: np.random.Generator, depth: int, max_depth: int, max_args: int,
          budget: int) -> tuple[Tree, int]:
  """(tree, token count); stops growing once `budget` tokens are exceeded (the tree is then
  rejected by its length anyway), so long generations do not run away."""
  if depth >= max_depth or rng.random() < LEAF_PROBABILITY or budget <= 0:
    return int(rng.integers(10)), 1
  op = OPERATORS[int(rng.integers(len(OPERATORS)))]
  args, length = [], 2
  for _ in range(int(rng.integers(2, max_args + 1))):
    sub, n = _tree(rng, depth + 1, max_depth, max_args, budget - length)
    args.append(sub)
    length += n
  return (op, args), length


def generate(num: int, *, seed: int, min_length: int, max_length: int, max_depth: int = 10,
             max_args: int = 10, exclude: set | None = None,
             max_tries: int | None = None) -> Iterator[tuple[str, int]]:
  """`num` unique (release-form source, value) pairs, deterministic from seed. `exclude`
  (a set of sources, updated in place) keeps them apart from other splits."""
  if not 1 <= min_length <= max_length:
    raise ValueError(f'ListOps lengths need 1 <= min_length <= max_length, got '
                     f'{min_length}, {max_length}')
  rng = np.random.default_rng(seed)
  seen = set() if exclude is None else exclude
  made, tries = 0, 0
  max_tries = max_tries or 2000 * num + 100_000
  while made < num:
    tries += 1
    if tries > max_tries:
      raise RuntimeError(f'only {made} of {num} ListOps trees with {min_length}-{max_length} '
                         f'tokens in {max_tries} tries (max_depth={max_depth}, '
                         f'max_args={max_args}); widen the length range or raise max_depth')
    tree, n = _tree(rng, 1, max_depth, max_args, max_length)
    if not min_length <= n <= max_length:
      continue
    source = to_string(tree)
    if source in seen:
      continue
    seen.add(source)
    made += 1
    yield source, evaluate(tree)
