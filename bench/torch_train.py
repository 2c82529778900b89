"""PyTorch peer of bench.train_step: the causal byte LM of models/causal_lm.py written in PyTorch
with F.scaled_dot_product_attention, trained by the same AdamW, and timed the same way.

Same architecture as ours with softmax (checked: the parameter count must equal the closed form
bench.lm_spec.param_count, which the tests check against our model): token embedding and learned
positions (N(0, 0.02)), dropout on the embeddings, pre-LN blocks x + drop(attn(LN(x))),
x + drop(MLP(LN(x))) with q/k/v/out and a tanh-GELU MLP (biases everywhere, LeCun-normal kernels),
final LayerNorm (eps 1e-6 as Flax's), an untied head with bias. AdamW with the config's betas,
eps and decoupled weight decay on Linear weights only, global-norm clipping, the config's
schedule. Eager mode (no torch.compile), the threads set to the cores this process may use.
Imports no JAX: the parent resolves the config into spec['model'] (bench.lm_spec.model_spec).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.lm_spec import learning_rate, param_count
from bench.measure import time_train_steps
from bench.system import cpu_cores

LN_EPS = 1e-6  # flax.nnx.LayerNorm's default


def lecun_normal_(weight: torch.Tensor) -> None:
  """jax.nn.initializers.lecun_normal: truncated normal (2 std) of variance 1 / fan_in."""
  std = math.sqrt(1.0 / weight.shape[1]) / 0.87962566103423978
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def linear(din: int, dout: int) -> nn.Linear:
  layer = nn.Linear(din, dout)
  lecun_normal_(layer.weight)
  nn.init.zeros_(layer.bias)
  return layer


class Block(nn.Module):
  def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float):
    super().__init__()
    self.num_heads, self.dropout = num_heads, dropout
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)
    self.q, self.k, self.v, self.out = (linear(dim, dim) for _ in range(4))
    self.up, self.down = linear(dim, mlp_dim), linear(mlp_dim, dim)

  def attention(self, x):
    b, n, d = x.shape
    heads = lambda t: t.view(b, n, self.num_heads, -1).transpose(1, 2)
    y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                       is_causal=True)
    return self.out(y.transpose(1, 2).reshape(b, n, d))

  def forward(self, x):
    drop = lambda t: F.dropout(t, self.dropout, self.training)
    x = x + drop(self.attention(self.norm1(x)))
    return x + drop(self.down(F.gelu(self.up(self.norm2(x)), approximate='tanh')))


class CausalLM(nn.Module):
  """tokens [batch, length] -> next-token logits [batch, length, vocab]."""

  def __init__(self, m: dict, max_len: int):
    super().__init__()
    if m['position'] not in ('learned', 'none'):
      raise ValueError(f"position must be 'learned' or 'none', got {m['position']!r}")
    self.dropout = m['dropout_rate']
    self.embed = nn.Embedding(m['vocab_size'], m['dim'])
    nn.init.normal_(self.embed.weight, std=0.02)
    self.pos = (nn.Parameter(torch.randn(max_len, m['dim']) * 0.02)
                if m['position'] == 'learned' else None)
    self.blocks = nn.ModuleList(Block(m['dim'], m['num_heads'], m['mlp_dim'], self.dropout)
                                for _ in range(m['num_layers']))
    self.norm = nn.LayerNorm(m['dim'], eps=LN_EPS)
    self.head = linear(m['dim'], m['vocab_size'])

  def forward(self, tokens):
    x = self.embed(tokens)
    if self.pos is not None:
      x = x + self.pos[:tokens.shape[1]]
    x = F.dropout(x, self.dropout, self.training)
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x)).float()


def optimizer(model: nn.Module, o: dict):
  """AdamW as trainlib.optim builds it: decay on Linear weights only, the run's schedule."""
  kernels = [mod.weight for mod in model.modules() if isinstance(mod, nn.Linear)]
  ids = {id(p) for p in kernels}
  rest = [p for p in model.parameters() if id(p) not in ids]
  opt = torch.optim.AdamW([{'params': kernels, 'weight_decay': o['weight_decay']},
                           {'params': rest, 'weight_decay': 0.0}],
                          lr=o['lr'], betas=(o['b1'], o['b2']), eps=o['eps'])
  schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: learning_rate(o, s) / o['lr'])
  return opt, schedule


def loss_fn(model: CausalLM, tokens: torch.Tensor) -> torch.Tensor:
  """Mean next-token cross-entropy over windows of T + 1 tokens (as tasks/_lm.py)."""
  logits = model(tokens[:, :-1])
  return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def measure(spec: dict, record) -> None:
  torch.set_num_threads(cpu_cores())
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.manual_seed(0)
  m, length = spec['model'], spec['length']
  batch = m['batch_size']
  record(batch=batch, num_layers=m['num_layers'], dim=m['dim'], heads=m['num_heads'],
         mlp_dim=m['mlp_dim'], dtype=m['compute_dtype'], threads=torch.get_num_threads())
  model = CausalLM(m, max_len=length).to(device).train()
  params = sum(p.numel() for p in model.parameters())
  if params != param_count(m, length):
    raise AssertionError(f'the PyTorch model has {params} parameters, ours '
                         f'{param_count(m, length)}: the architectures differ')
  record(params=params)
  opt, schedule = optimizer(model, m['optim'])
  tokens = torch.randint(0, m['vocab_size'], (batch, length + 1),
                         generator=torch.Generator().manual_seed(0)).to(device)
  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=m['compute_dtype'] == 'bfloat16')

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_fn(model, tokens)
    loss.backward()
    if m['optim']['grad_clip']:
      nn.utils.clip_grad_norm_(model.parameters(), m['optim']['grad_clip'])
    opt.step()
    schedule.step()
    sync()

  time_train_steps(step, spec['repeats'], batch * length, record)
