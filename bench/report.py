"""Outputs of a bench run: raw CSV and JSON, Markdown tables of ratios to softmax with
log-log slopes, and log-log PNG plots (skipped with a message where matplotlib is absent)."""
from __future__ import annotations

import csv
import itertools
import json
import os
import sys

import numpy as np

REFERENCE = 'softmax'
# (row key, title, 'time' or 'bytes'): the tables' and plots' metrics.
METRICS = (
    ('fwdbwd_s', 'forward+backward time', 'time'),
    ('fwd_s', 'forward time', 'time'),
    ('fwdbwd_peak_bytes', 'peak memory, forward+backward', 'bytes'),
    ('fwdbwd_xla_bytes', 'XLA compiled memory, forward+backward', 'bytes'),
)
LEGEND = """\
Cells: ratio to `{ref}` at the same length, the measured value in brackets; where a
case did not run: n/a (no such mode), oom, timeout, killed or error, and — for a
length skipped after a failure at a shorter one. Slope: least-squares fit of
log(value) on log(length) over lengths >= {min_length}. Peak memory: on a GPU the
device's peak bytes in use; on a CPU how far the fresh process's resident set rose
while the compiled calls ran (inputs and parameters already in memory). XLA compiled
memory: temp + argument + output bytes of the compiled function (JAX only).
"""
COLUMNS = (
    'impl', 'source', 'framework', 'mode', 'length', 'batch', 'heads', 'head_dim', 'dtype',
    'status', 'fwd_s', 'fwdbwd_s', 'fwd_compile_s', 'fwdbwd_compile_s', 'fwd_xla_bytes',
    'fwdbwd_xla_bytes', 'fwd_xla_temp_bytes', 'fwdbwd_xla_temp_bytes', 'fwd_rss_start_bytes',
    'fwd_rss_peak_bytes', 'fwdbwd_rss_start_bytes', 'fwdbwd_rss_peak_bytes',
    'process_peak_rss_bytes', 'fwd_device_peak_bytes', 'fwdbwd_device_peak_bytes',
    'fwd_peak_bytes', 'fwdbwd_peak_bytes', 'wall_s', 'error')


def add_peaks(row: dict) -> dict:
  """fwd/fwdbwd_peak_bytes: the device's peak where there is one, else how far the resident
  set rose above its size when the phase's calls began (compiled, inputs in memory)."""
  for phase in ('fwd', 'fwdbwd'):
    device, peak = row.get(f'{phase}_device_peak_bytes'), row.get(f'{phase}_rss_peak_bytes')
    row[f'{phase}_peak_bytes'] = (device if device is not None else
                                  peak - row[f'{phase}_rss_start_bytes'] if peak is not None
                                  else None)
  return row


def slope(points: list[tuple[int, float]], min_length: int) -> float | None:
  """Least-squares slope of log(value) against log(length) over lengths >= min_length."""
  pts = [(n, v) for n, v in points if n >= min_length and v is not None and v > 0]
  if len(pts) < 2:
    return None
  x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
  return float(np.polyfit(x, y, 1)[0])


def series(rows, impl, mode, key) -> list[tuple[int, float | None]]:
  return [(r['length'], r.get(key)) for r in rows if r['impl'] == impl and r['mode'] == mode]


def slopes(rows, min_length: int) -> dict:
  """{mode: {impl: {metric: slope or None}}}."""
  out = {}
  for mode in dict.fromkeys(r['mode'] for r in rows):
    for impl in dict.fromkeys(r['impl'] for r in rows):
      if any(r['impl'] == impl and r['mode'] == mode for r in rows):
        out.setdefault(mode, {})[impl] = {
            key: slope(series(rows, impl, mode, key), min_length) for key, _, _ in METRICS}
  return out


def human(value: float, unit: str) -> str:
  if unit == 'bytes':
    return f'{value / 1e6:.1f} MB' if value < 1e9 else f'{value / 1e9:.2f} GB'
  return f'{value * 1e3:.2f} ms' if value < 1 else f'{value:.2f} s'


def cell(row: dict | None, ref: dict | None, key: str, unit: str) -> str:
  if row is None:
    return ''
  value = row.get(key)
  if value is None:
    return '—' if row['status'] in ('ok', 'skipped') else row['status']
  base = ref.get(key) if ref else None
  return f'{value / base:.2f}× ({human(value, unit)})' if base else human(value, unit)


def order(rows, mode: str) -> list[str]:
  """The mode's implementations: ours first (softmax leading), then the peers, by name."""
  peers = {r['impl'] for r in rows if r['source'] == 'peer'}
  impls = {r['impl'] for r in rows if r['mode'] == mode}
  return sorted(impls, key=lambda i: (i != REFERENCE, i in peers, i))


def markdown(rows, fitted: dict, min_length: int) -> str:
  lengths = sorted({r['length'] for r in rows})
  out = []
  for mode, per_impl in fitted.items():
    for key, title, unit in METRICS:
      if not any(r.get(key) is not None for r in rows if r['mode'] == mode):
        continue
      out += [f'### {mode}: {title}', '',
              '| mixer | ' + ' | '.join(f'L={n}' for n in lengths) + ' | slope |',
              '|---' * (len(lengths) + 2) + '|']
      at = {(r['impl'], r['length']): r for r in rows if r['mode'] == mode}
      for impl in order(rows, mode):
        mine = [r for r in at.values() if r['impl'] == impl]
        if all(r.get(key) is None and r['status'] == 'ok' for r in mine):
          continue  # nothing to show (e.g. XLA memory of a PyTorch peer)
        s = per_impl[impl][key]
        cells = [cell(at.get((impl, n)), at.get((REFERENCE, n)), key, unit) for n in lengths]
        out.append(f'| {impl} | ' + ' | '.join(cells) + f' | {"—" if s is None else f"{s:.2f}"} |')
      out.append('')
  return '\n'.join(out)


def plot(rows, out_dir: str, stem: str) -> list[str]:
  """<stem>_time_<mode>.png and <stem>_memory_<mode>.png: two log-log panels each, one line
  per implementation (peers dashed)."""
  try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
  except ImportError:
    print('matplotlib is not installed: plots skipped '
          '(pip install -r bench/requirements-peers.txt in a separate virtualenv).')
    return []
  lengths = sorted({r['length'] for r in rows})
  peers = {r['impl'] for r in rows if r['source'] == 'peer'}
  written = []
  for mode in dict.fromkeys(r['mode'] for r in rows):
    impls = order(rows, mode)
    ours = [i for i in impls if i not in peers]  # ours from one palette, peers from another
    colors = {**dict(zip(ours, itertools.cycle(plt.get_cmap('tab20').colors))),
              **dict(zip([i for i in impls if i in peers],
                         itertools.cycle(plt.get_cmap('Dark2').colors)))}
    for name, metrics in (('time', METRICS[1::-1]), ('memory', METRICS[2:])):
      fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
      for ax, (key, title, unit) in zip(axes, metrics):
        for impl in impls:
          pts = [(n, v) for n, v in series(rows, impl, mode, key) if v]
          if pts:
            ax.plot(*zip(*pts), '--s' if impl in peers else '-o', color=colors[impl],
                    label=impl, markersize=4)
        ax.set(xscale='log', yscale='log', xlabel='sequence length',
               ylabel='seconds' if unit == 'time' else 'bytes', title=title)
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
      legend = {}  # one entry per implementation, from whichever panel has its line
      for ax in axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
      fig.legend(legend.values(), legend.keys(), loc='center right', fontsize=8)
      fig.suptitle(mode)
      fig.tight_layout(rect=(0, 0, 0.85, 1))
      path = os.path.join(out_dir, f'{stem}_{name}_{mode}.png')
      fig.savefig(path, dpi=120)
      plt.close(fig)
      written.append(path)
  return written


def write_raw(rows, meta: dict, out_dir: str, stem: str, columns=COLUMNS) -> list[str]:
  """<stem>.csv (one row per measurement) and <stem>.json (meta + rows with every repeat)."""
  os.makedirs(out_dir, exist_ok=True)
  csv_path, json_path = (os.path.join(out_dir, f'{stem}.{ext}') for ext in ('csv', 'json'))
  with open(csv_path, 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
    w.writeheader()
    w.writerows(rows)
  with open(json_path, 'w') as f:
    json.dump({**meta, 'rows': rows}, f, indent=1)
  return [csv_path, json_path]


def header(meta: dict) -> str:
  m = meta['machine']
  jax_on = 'the CPU' if m['backend'] == 'cpu' else f'{m["device_kind"]} ({m["backend"]})'
  torch_on = ('' if 'torch_device' not in m else
              f', PyTorch on {m["torch_device_kind"]} ({m["torch_device"]})')
  versions = ', '.join(f'{k} {v}' for k, v in meta['versions'].items())
  return (f'Command: `{meta["command"]}`\n\n'
          f'Machine: {m["cpu"]}, {m["cores"]} cores, {(m["memory_bytes"] or 0) / 2**30:.0f} GiB; '
          f'JAX on {jax_on}{torch_on}. Versions: {versions}.\n')


def write_all(rows, meta: dict, out_dir: str, stem: str, min_length: int) -> tuple[list, str]:
  """Every output of a mixer sweep; returns (paths written, the Markdown text)."""
  rows = [add_peaks(dict(r)) for r in rows]
  fitted = slopes(rows, min_length)
  meta = {**meta, 'fit_min_length': min_length, 'slopes': fitted}
  paths = write_raw(rows, meta, out_dir, stem)
  st = meta['settings']
  text = '\n'.join([
      header(meta),
      f'Batch {st["batch"]}, {st["heads"]} heads x {st["head_dim"]}, float32 (the cuDNN peer '
      f'bfloat16); median of {st["repeats"]} calls after a warm-up, each case in a fresh '
      f'process.\n', LEGEND.format(ref=REFERENCE, min_length=min_length),
      markdown(rows, fitted, min_length)])
  md_path = os.path.join(out_dir, f'{stem}.md')
  with open(md_path, 'w') as f:
    f.write(text)
  return paths + [md_path] + plot(rows, out_dir, stem), text


def rewrite(json_path: str) -> list[str]:
  """Rebuilds a sweep's Markdown and plots from its JSON (after a report change, say)."""
  with open(json_path) as f:
    meta = json.load(f)
  rows = meta.pop('rows')
  meta.pop('slopes', None)
  stem = os.path.splitext(os.path.basename(json_path))[0]
  paths, _ = write_all(rows, meta, os.path.dirname(json_path), stem, meta['fit_min_length'])
  return paths


if __name__ == '__main__':  # python -m bench.report bench/results/mixers_cpu.json
  print('wrote ' + ', '.join(rewrite(sys.argv[1])))
