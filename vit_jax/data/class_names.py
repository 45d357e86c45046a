"""Class names that ship with the package."""
from __future__ import annotations

from importlib import resources


def imagenet_class_names() -> list[str]:
  """The 1000 ImageNet-1k class names in label order (from timm's
  `imagenet_synset_to_lemma.txt`)."""
  text = resources.files('vit_jax.data').joinpath('imagenet_classes.txt').read_text()
  return text.splitlines()
