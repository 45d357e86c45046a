"""Fine-tuning as in the ViT paper: SGD momentum 0.9, batch 512, cosine decay,
500 warmup steps, gradient clipping at 1.0, a new zero-initialised head, and
position embeddings resampled to the new resolution.

    python train.py --config=configs/finetune.py:vit_base_patch16_384 --workdir=DIR \
        --config.pretrained=PATH [--config.dataset=... --config.model_overrides.num_classes=N]

PATH is anything `load_params` reads (timm .pth/.safetensors, Google .npz,
orbax, a training workdir). The image size is the model's unless
--config.image_size says otherwise.
"""
from configs.common import base_config, fit_v3_8

import vit_jax


def get_config(model: str = 'vit_base_patch16_384'):
  c = base_config()
  c.model = model
  model_cfg = vit_jax.get_model_config(model)
  c.model_overrides = {'num_classes': 1000}
  c.image_size = model_cfg.image_size
  c.dataset = 'tfds:imagenet2012:train'
  c.eval_dataset = 'tfds:imagenet2012:validation'
  c.batch_size = 512
  c.total_steps = 20_000
  c.warmup_steps = 500
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.lr = 0.01
  c.weight_decay = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  c.pretrained = ''               # required: set --config.pretrained
  c.dtype = 'bfloat16'            # parameters and optimizer state stay float32
  fit_v3_8(c)                     # batch 512 fits a v3-8
  c.checkpoint_every = 1000
  c.eval_every = 2000
  c.log_every = 100
  return c
