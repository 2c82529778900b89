"""Activation sharding: inside a mesh, block inputs/outputs and the heads/MLP activations take the
shardings config.axis_rules gives their logical names, so tensor parallelism splits activations
too; outside a mesh (or with rules that name no activation axis) nothing is constrained."""
import os
import subprocess
import sys

from tests.test_sharding import ROOT, env_with_devices, result_of

CHECK = r'''
import json
import jax, jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from configs.common import base_config
from models import CausalLM
from mixers.layers import sharding_scope
from trainlib import mesh as mesh_lib

def shardings(rules, mesh_shape, batch):
  """Per-device shapes of a block's output, the q projection's and the MLP's hidden output (jit
  outputs carry the sharding the constraints gave them)."""
  mesh = mesh_lib.make_mesh(mesh_shape)
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules), sharding_scope():
    model = CausalLM(vocab_size=16, dim=16, num_layers=1, num_heads=4, mlp_dim=32, max_len=8,
                     mixer='softmax', rngs=nnx.Rngs(0))
  x = jax.device_put(jnp.ones((batch, 8, 16)), NamedSharding(mesh, P()))
  block = model.blocks[0]
  outs = nnx.jit(lambda b, x: (b(x), b.mixer.q(x), b.mlp.up(x)))(block, x)
  return [list(o.sharding.shard_shape(o.shape)) for o in outs]

rules = base_config().axis_rules
weights_only = tuple(r for r in rules if not r[0].startswith('activation_'))
tp = dict(data=4, fsdp=1, tensor=2)
out = {'dp_tp': shardings(rules, tp, 8), 'weights_only': shardings(weights_only, tp, 8),
       'heads_replicated': shardings(rules + (('activation_heads', None),), tp, 8),
       'batch_of_one': shardings(rules, tp, 1),
       'fsdp': shardings(rules, dict(data=1, fsdp=-1, tensor=1), 8)}
print('RESULT ' + json.dumps(out))
'''


def test_activations_take_the_shardings_of_their_logical_names():
  proc = subprocess.run([sys.executable, '-c', CHECK], cwd=ROOT, env=env_with_devices(8),
                        capture_output=True, text=True, timeout=600)
  out = result_of(proc.stdout, proc.stderr)
  # [8, 8, 16] block input on 4 data x 2 tensor devices: the block output split over the
  # batch, q [.., 16] and the MLP hidden [.., 32] over the batch and their features.
  assert out['dp_tp'] == [[2, 8, 16], [2, 8, 8], [2, 8, 16]]
  assert out['fsdp'] == [[1, 8, 16], [1, 8, 16], [1, 8, 32]]  # 8-way FSDP: the batch only
  # The rules drive it: activation_heads replicated -> q's features whole (the MLP's split).
  assert out['heads_replicated'] == [[2, 8, 16], [2, 8, 16], [2, 8, 16]]
  # A batch of 1 (sampling) does not divide over 4 data shards: left whole, no error.
  assert out['batch_of_one'] == [[1, 8, 16], [1, 8, 8], [1, 8, 16]]
  # Without activation rules nothing is constrained: the block output stays replicated.
  assert out['weights_only'][0] == [8, 8, 16]
