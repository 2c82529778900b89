"""Fixtures shared by the test modules: the tiny enwik8 zip and one uninterrupted run on it."""
import pytest

import train
from tests.helpers import tiny_config, tiny_text, write_enwik8_zip


@pytest.fixture(scope='session')
def zip_path(tmp_path_factory):
  return write_enwik8_zip(tmp_path_factory.mktemp('data') / 'enwik8.zip', tiny_text())


@pytest.fixture(scope='session')
def reference(zip_path, tmp_path_factory):
  """(workdir, result) of an uninterrupted 12-step run of the tiny config (checkpoints 6, 9,
  12). Tests read it; one that changes a workdir copies it first."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  return workdir, train.train_and_evaluate(tiny_config(zip_path), workdir)
