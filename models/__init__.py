"""Backbones: they hold mixers from the registry and know nothing of training or data."""
from models.causal_lm import CausalLM, generate
from models.encoder import Encoder, pool
from models.lra import Classifier, DualEncoder
from models.vit import ViT
