"""PyTorch peers: the attention cores a researcher would install instead of ours, each behind
the same four d x d projections (q, k, v, out) our mixers have, so the ratios are fair."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.system import cpu_cores
from bench.measure import time_phases

PEERS = ('torch_sdpa', 'torch_linear', 'performer_pytorch')
PERFORMER_FEATURES = 256  # m of our performer mixer's default


def linear_attention(q, k, v, causal: bool, eps: float = 1e-6):
  """Katharopoulos et al. (2020) with elu+1 features, written the plain way: causally,
  cumulative sums of the [d, d] outer products k_t v_t^T over positions ([B, H, L, d, d])."""
  q, k = F.elu(q) + 1, F.elu(k) + 1
  if causal:
    kv = torch.cumsum(torch.einsum('bhld,bhle->bhlde', k, v), dim=2)
    num = torch.einsum('bhld,bhlde->bhle', q, kv)
    den = torch.einsum('bhld,bhld->bhl', q, torch.cumsum(k, dim=2))
  else:
    num = torch.einsum('bhld,bhde->bhle', q, torch.einsum('bhld,bhle->bhde', k, v))
    den = torch.einsum('bhld,bhd->bhl', q, k.sum(dim=2))
  return num / (den[..., None] + eps)


def core(impl: str, head_dim: int, causal: bool):
  if impl == 'torch_sdpa':
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
  if impl == 'torch_linear':
    return lambda q, k, v: linear_attention(q, k, v, causal)
  if impl == 'performer_pytorch':
    from performer_pytorch import FastAttention
    return FastAttention(dim_heads=head_dim, nb_features=PERFORMER_FEATURES, causal=causal)
  raise ValueError(f'unknown PyTorch peer {impl!r}; peers: {", ".join(PEERS)}')


class Projected(nn.Module):
  """x [B, L, dim] -> out(core(q(x), k(x), v(x))), the core over [B, heads, L, head_dim]."""

  def __init__(self, dim: int, num_heads: int, attention):
    super().__init__()
    self.num_heads, self.attention = num_heads, attention
    self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

  def forward(self, x):
    b, n, d = x.shape
    heads = lambda t: t.view(b, n, self.num_heads, -1).transpose(1, 2)
    y = self.attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
    return self.out(y.transpose(1, 2).reshape(b, n, d))


def measure(spec: dict, record) -> None:
  torch.set_num_threads(cpu_cores())
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.manual_seed(0)
  record(dtype='float32')
  dim = spec['heads'] * spec['head_dim']
  model = Projected(dim, spec['heads'],
                    core(spec['impl'], spec['head_dim'], spec['mode'] == 'causal')).to(device)
  x = torch.randn(spec['batch'], spec['length'], dim, device=device)
  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

  def forward():
    with torch.no_grad():  # as a jitted JAX forward, nothing is kept for a backward pass
      model(x)
    sync()

  def forward_backward():
    model.zero_grad(set_to_none=True)
    model(x.detach().requires_grad_()).sum().backward()
    sync()

  # A tiny call first, so the runtime's start-up memory is not counted in a phase's peak.
  model(x[:, :16].detach().requires_grad_()).sum().backward()
  device_peak = lambda: {'device_peak_bytes': (torch.cuda.max_memory_allocated()
                                                if device.type == 'cuda' else None)}
  time_phases({'fwd': (forward, device_peak), 'fwdbwd': (forward_backward, device_peak)},
              spec['repeats'], record)
