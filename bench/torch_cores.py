"""PyTorch attention cores alone (q, k, v [B, H, L, D] -> output, and the gradient with
respect to q, k and v for a random output cotangent made beforehand): the peers of
bench/core_cases.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.measure import NotApplicable, time_phases
from bench.system import cpu_cores
from bench.torch_peers import linear_attention

LAT_BUCKET = 64  # linear-attention-transformer's default bucket_size


def core(impl: str, causal: bool):
  if impl == 'torch_sdpa':
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
  if impl == 'torch_linear':
    return lambda q, k, v: linear_attention(q, k, v, causal)
  if impl == 'lat_linear':  # linear-attention-transformer: softmax features, not causal
    if causal:
      raise NotApplicable('lat_linear is bidirectional (its causal form is lat_causal)')
    from linear_attention_transformer.linear_attention_transformer import linear_attn
    return linear_attn
  if impl == 'lat_causal':  # attends to earlier buckets of 64 only: not exact per token
    if not causal:
      raise NotApplicable('lat_causal is the causal form (bidirectional: lat_linear)')
    from linear_attention_transformer.linear_attention_transformer import causal_linear_attn
    return lambda q, k, v: causal_linear_attn(q, k, v, bucket_size=LAT_BUCKET)
  raise ValueError(f'unknown PyTorch core {impl!r}')


def measure(spec: dict, record) -> None:
  torch.set_num_threads(cpu_cores())
  torch.manual_seed(1)
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
  fn = core(spec['impl'], spec['mode'] == 'causal')
  shape = (spec['batch'], spec['heads'], spec['length'], spec['head_dim'])
  q, k, v, g = (torch.randn(shape, device=device) for _ in range(4))
  record(dtype='float32')

  def forward():
    with torch.no_grad():
      fn(q, k, v)
    sync()

  def forward_backward():
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    fn(*leaves).backward(g)
    sync()

  small = [x[:, :, :LAT_BUCKET].detach().requires_grad_() for x in (q, k, v)]
  fn(*small).sum().backward()  # the runtime's start-up memory, before any phase's peak
  # fwd+bwd first, as bench.core_cases does (its memory before the heap holds freed buffers)
  device_peak = lambda: {'device_peak_bytes': (torch.cuda.max_memory_allocated()
                                                if device.type == 'cuda' else None)}
  time_phases({'fwdbwd': (forward_backward, device_peak), 'fwd': (forward, device_peak)},
              spec['repeats'], record)
