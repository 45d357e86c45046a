"""A small ViT on scikit-learn's handwritten digits: minutes on a laptop CPU.

    python train.py --config=configs/quickstart.py --workdir=/tmp/vit_quickstart

The digits ship with scikit-learn; they are written once as a 32x32 image
folder (~/.cache/vit_jax/digits, or under --config.data_dir).
"""
from configs.common import base_config


def get_config():
  c = base_config()
  c.model = 'vit_tiny_patch16_224'
  c.model_overrides = dict(patch_size=4, hidden_size=96, num_layers=4, num_heads=3,
                           mlp_dim=192, num_classes=10, crop_pct=1.0, mean=(0.5,) * 3,
                           std=(0.5,) * 3)
  c.dataset = 'digits:train'
  c.eval_dataset = 'digits:test'
  c.image_size = 32
  c.batch_size = 64
  c.eval_batch_size = 128
  c.total_steps = 1000
  c.warmup_steps = 100
  c.optimizer = 'adamw'
  c.lr = 2e-3
  c.weight_decay = 0.05
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.1
  c.checkpoint_every = 500
  c.eval_every = 500
  c.log_every = 50
  c.crop_scale = (0.7, 1.0)
  c.flip = False                  # a flipped digit is another glyph
  c.workers = 4
  return c
