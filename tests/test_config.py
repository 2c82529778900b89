"""Configs: command-line overrides of any field; the ':arg' string is parsed strictly."""
import pytest

from configs import enwik8
from tests.helpers import parse


def test_command_line_overrides_any_field():
  c = parse('--config=configs/enwik8.py:mixer=softmax', '--config.model.num_layers=2',
            '--config.optim.lr=0.01', '--config.data.path=/tmp/e.zip', '--config.num_steps=7')
  assert (c.model.num_layers, c.optim.lr, c.data.path, c.num_steps) == (2, 0.01, '/tmp/e.zip', 7)


def test_unknown_field_is_an_error():
  with pytest.raises(Exception, match='nope'):
    parse('--config=configs/enwik8.py', '--config.model.nope=1')


def test_arg_string_is_strict():
  with pytest.raises(ValueError, match="unknown config argument 'mixr'"):
    enwik8.get_config('mixr=softmax')
  with pytest.raises(ValueError, match='size must be one of'):
    enwik8.get_config('size=3x3')


def test_paper_settings():
  c = enwik8.get_config('mixer=softmax')
  m = c.model
  assert (m.num_layers, m.dim, m.num_heads, m.mlp_dim, c.data.seq_len) == (12, 512, 8, 2048, 1024)
  assert (c.optim.lr, c.optim.weight_decay, m.dropout_rate, c.batch_size, c.num_epochs) == (
      3e-3, 0.5, 0.1, 128, 100)
  small = enwik8.get_config('size=24x256').model
  assert (small.num_layers, small.dim, small.num_heads) == (24, 256, 4)
  assert enwik8.get_config('quick').data.name == 'builtin'
